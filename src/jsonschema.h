/*-------------------------------------------------------------------------
 *
 * jsonschema.h
 *	  JSON Schema (draft 2020-12, and draft-07) validation of jsonb values.
 *
 * A schema is compiled once into an EbSchema, which lives in its own
 * memory context, and then validates any number of documents.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_JSONSCHEMA_H
#define EB_JSONSCHEMA_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef struct EbSchema EbSchema;

/* One failure: where in the document, which keyword, and what. */
typedef struct EbSchemaError
{
	char	   *path;			/* JSON path of the instance, e.g. "$.items[2].id" */
	char	   *keyword;		/* e.g. "required" */
	char	   *message;		/* e.g. "required property \"amount\" is missing" */
} EbSchemaError;

/*
 * Finds a schema document by absolute URI (no fragment), for $ref to
 * another registered schema; NULL if there is none. Never the network.
 */
typedef Jsonb *(*EbSchemaResolver) (const char *uri, void *arg);

/*
 * Compiles a schema. Raises ERROR (SQLSTATE 22023 invalid_parameter_value,
 * with a DETAIL naming the JSON path in the schema and the problem) for an
 * invalid schema: wrong keyword types, bad regex, unknown $schema,
 * unresolvable $ref. The result and everything it needs live in a new
 * memory context under "parent".
 */
extern EbSchema *EbSchemaCompile(Jsonb *schema, EbSchemaResolver resolver, void *arg,
								 MemoryContext parent);

/*
 * Validates a document. Returns true if it is valid. When "errors" is not
 * NULL, appends EbSchemaError pointers (palloc'd in CurrentMemoryContext):
 * only the first failure when "all" is false, every failure when true.
 */
extern bool EbSchemaValidate(EbSchema *schema, Jsonb *doc, bool all, List **errors);

/* Frees a compiled schema (deletes its memory context). */
extern void EbSchemaFree(EbSchema *schema);

/* The memory context a compiled schema lives in (EbSchemaFree deletes it). */
extern MemoryContext EbSchemaContext(EbSchema *schema);

#endif							/* EB_JSONSCHEMA_H */
