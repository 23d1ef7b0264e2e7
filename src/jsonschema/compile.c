/*-------------------------------------------------------------------------
 *
 * compile.c
 *	  The JSON Schema compiler: walks a schema document, registers its
 *	  resources and anchors, resolves every "$ref" and compiles each schema
 *	  object once into a SchemaNode (its keywords: keywords.c).
 *
 * Each schema object is compiled once (nodes are keyed by their container
 * address, and a node is registered before its keywords are compiled), so
 * cyclic schemas compile to cyclic graphs in finite time.  Documents that
 * "$ref" names by URI come from the caller's resolver (EbSchemaResolver);
 * the compiler never looks anything up by itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonschema_int.h"

/* Base URI of a schema without "$id". */
#define DEFAULT_BASE_URI "https://eventbus.invalid/schema.json"

static SchemaNode *CompileValue(Compiler *c, JsonbValue *jv, IndexEntry *ctx,
								const char *loc);

/* Raises the invalid-schema ERROR for a keyword of a schema object. */
void
JsBadSchema(const char *loc, const char *keyword, const char *hint,
			const char *fmt,...)
{
	StringInfoData msg;

	initStringInfo(&msg);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON Schema"),
			 errdetail("at %s%s%s: %s", loc, keyword ? "/" : "",
					   keyword ? keyword : "", msg.data),
			 hint ? errhint("%s", hint) : 0));
}

/* Reads the draft named by a "$schema" value. */
static int
ParseDraft(JsonbValue *v, const char *loc)
{
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		if (strcmp(s, "https://json-schema.org/draft/2020-12/schema") == 0 ||
			strcmp(s, "https://json-schema.org/draft/2020-12/schema#") == 0)
			return DRAFT_2020;
		if (strcmp(s, "http://json-schema.org/draft-07/schema#") == 0 ||
			strcmp(s, "http://json-schema.org/draft-07/schema") == 0)
			return DRAFT_7;
		JsBadSchema(loc, "$schema",
					"Use \"https://json-schema.org/draft/2020-12/schema\" or \"http://json-schema.org/draft-07/schema#\".",
					"unsupported \"$schema\" \"%s\"", s);
	}
	JsBadSchema(loc, "$schema", NULL, "\"$schema\" must be a string");
	return DRAFT_2020;			/* keep compiler quiet */
}

/* Finds a resource by absolute URI (no fragment), or NULL. */
static Resource *
FindResource(Compiler *c, const char *uri)
{
	ListCell   *lc;

	foreach(lc, c->resources)
	{
		Resource   *r = lfirst(lc);

		if (strcmp(r->uri, uri) == 0)
			return r;
	}
	return NULL;
}

/* Registers a resource. */
static Resource *
AddResource(Compiler *c, const char *uri, JsonbValue *root, int draft)
{
	Resource   *r = palloc0(sizeof(Resource));

	r->uri = pstrdup(uri);
	r->root = *root;
	r->draft = draft;
	c->resources = lappend(c->resources, r);
	return r;
}

/* Registers a plain-name anchor of a resource. */
static void
AddAnchor(Compiler *c, const char *base, const char *name, JsonbValue *target,
		  Resource *res, bool dynamic)
{
	Anchor	   *a = palloc0(sizeof(Anchor));

	a->uri = psprintf("%s#%s", base, name);
	a->name = pstrdup(name);
	a->target = *target;
	a->res = res;
	a->dynamic = dynamic;
	c->anchors = lappend(c->anchors, a);
	if (dynamic)
		res->dynanchors = lappend(res->dynanchors, a);
}

/* Finds an anchor by full URI, or NULL. */
static Anchor *
FindAnchor(Compiler *c, const char *uri)
{
	ListCell   *lc;

	foreach(lc, c->anchors)
	{
		Anchor	   *a = lfirst(lc);

		if (strcmp(a->uri, uri) == 0)
			return a;
	}
	return NULL;
}

/* Keywords whose value is one schema, an array of schemas, a map of them. */
static const char *const single_kws[] = {
	"additionalProperties", "additionalItems", "items", "contains", "not",
	"if", "then", "else", "propertyNames", "unevaluatedItems",
	"unevaluatedProperties", NULL
};
static const char *const array_kws[] = {
	"allOf", "anyOf", "oneOf", "prefixItems", "items", NULL
};
static const char *const map_kws[] = {
	"properties", "patternProperties", "$defs", "definitions",
	"dependentSchemas", "dependencies", NULL
};

/*
 * Walks a schema document: records the base URI, resource, draft and
 * location of every schema object, and registers "$id" resources and
 * anchors, so that "$ref" can find them before they are compiled.
 */
static void
IndexSchema(Compiler *c, JsonbValue *jv, const char *base, Resource *res,
			int draft, const char *loc, bool docroot)
{
	JsonbContainer *jc;
	JsonbValue	v;
	JsonbValue	idv;
	bool		has_id;
	bool		has_ref;
	IndexEntry *e;
	bool		found;
	const char *newbase = base;
	int			k;

	check_stack_depth();
	if (!JsIsObject(jv))
		return;
	jc = jv->val.binary.data;

	has_id = JsGetKey(jc, "$id", &idv);
	has_ref = JsGetKey(jc, "$ref", &v);
	if ((docroot || has_id) && JsGetKey(jc, "$schema", &v))
	{
		draft = ParseDraft(&v, loc);
		if (docroot)
			res->draft = draft;
	}
	if (has_id && !(draft == DRAFT_7 && has_ref))
	{
		char	   *id;

		if (idv.type != jbvString)
			JsBadSchema(loc, "$id", NULL, "\"$id\" must be a string");
		id = pnstrdup(idv.val.string.val, idv.val.string.len);
		if (draft == DRAFT_7 && id[0] == '#')
			AddAnchor(c, base, id + 1, jv, res, false);
		else
		{
			char	   *full = JsResolveUri(base, id);
			char	   *hash = strchr(full, '#');

			if (hash)
				*hash = '\0';
			newbase = full;
			if (!(docroot && strcmp(full, res->uri) == 0))
				res = AddResource(c, full, jv, draft);
			if (hash && hash[1] != '\0' && draft == DRAFT_7)
				AddAnchor(c, newbase, hash + 1, jv, res, false);
		}
	}
	if (draft == DRAFT_2020)
	{
		if (JsGetKey(jc, "$anchor", &v))
		{
			if (v.type != jbvString)
				JsBadSchema(loc, "$anchor", NULL, "\"$anchor\" must be a string");
			AddAnchor(c, newbase, pnstrdup(v.val.string.val, v.val.string.len),
					  jv, res, false);
		}
		if (JsGetKey(jc, "$dynamicAnchor", &v))
		{
			if (v.type != jbvString)
				JsBadSchema(loc, "$dynamicAnchor", NULL,
							"\"$dynamicAnchor\" must be a string");
			AddAnchor(c, newbase, pnstrdup(v.val.string.val, v.val.string.len),
					  jv, res, true);
		}
	}

	e = hash_search(c->index, &jc, HASH_ENTER, &found);
	if (found)
		return;
	e->base = pstrdup(newbase);
	e->res = res;
	e->draft = draft;
	e->loc = pstrdup(loc);
	e->node = NULL;

	for (k = 0; single_kws[k]; k++)
	{
		if (JsGetKey(jc, single_kws[k], &v) && JsIsObject(&v))
			IndexSchema(c, &v, newbase, res, draft,
						psprintf("%s/%s", loc, single_kws[k]), false);
	}
	for (k = 0; array_kws[k]; k++)
	{
		if (JsGetKey(jc, array_kws[k], &v) && JsIsArray(&v))
		{
			ContIter	it;
			JsonbValue	el;

			JsIterInit(&it, v.val.binary.data);
			while (JsIterNext(&it, NULL, &el))
				IndexSchema(c, &el, newbase, res, draft,
							psprintf("%s/%s/%d", loc, array_kws[k], it.i - 1),
							false);
		}
	}
	for (k = 0; map_kws[k]; k++)
	{
		if (JsGetKey(jc, map_kws[k], &v) && JsIsObject(&v))
		{
			ContIter	it;
			JsonbValue	key,
						el;

			JsIterInit(&it, v.val.binary.data);
			while (JsIterNext(&it, &key, &el))
				IndexSchema(c, &el, newbase, res, draft,
							psprintf("%s/%s/%s", loc, map_kws[k],
									 JsPointerToken(key.val.string.val,
													key.val.string.len)),
							false);
		}
	}
}

/* Fetches a document through the resolver and indexes it; NULL if none. */
static Resource *
LoadRemote(Compiler *c, const char *uri, int draft)
{
	Jsonb	   *jb;
	Jsonb	   *copy;
	JsonbValue	root;
	Resource   *res;

	if (c->resolver == NULL)
		return NULL;
	jb = c->resolver(uri, c->arg);
	if (jb == NULL)
		return NULL;
	jb = DatumGetJsonbP(PointerGetDatum(jb));
	copy = palloc(VARSIZE(jb));
	memcpy(copy, jb, VARSIZE(jb));
	JsRootValue(copy, &root);
	res = AddResource(c, uri, &root, draft);
	IndexSchema(c, &root, uri, res, draft, psprintf("%s#", uri), true);
	return res;
}

/*
 * Resolves a "$ref" (or "$dynamicRef") and compiles its target.  Sets
 * *anchor to the anchor the fragment named, if it named one.
 */
SchemaNode *
JsCompileRef(Compiler *c, IndexEntry *from, const char *kw, JsonbValue *refv,
			 Anchor **anchor)
{
	char	   *ref;
	char	   *full;
	char	   *hash;
	char	   *frag = "";
	Resource   *res;
	JsonbValue	target;
	IndexEntry	ctx;

	if (refv->type != jbvString)
		JsBadSchema(from->loc, kw, NULL, "\"%s\" must be a string", kw);
	ref = pnstrdup(refv->val.string.val, refv->val.string.len);
	full = JsResolveUri(from->base, ref);
	hash = strchr(full, '#');
	if (hash)
	{
		*hash = '\0';
		frag = hash + 1;
	}
	res = FindResource(c, full);
	if (res == NULL)
		res = LoadRemote(c, full, from->draft);
	if (res == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JSON Schema: cannot resolve \"%s\" \"%s\"",
						kw, ref),
				 errdetail("at %s/%s: no schema document has the URI \"%s\".",
						   from->loc, kw, full),
				 errhint("Register the referenced schema first, or refer to a local definition, e.g. \"#/$defs/name\".")));
	if (*frag == '\0')
		target = res->root;
	else if (*frag == '/')
	{
		if (!JsPointerLookup(&res->root, JsPercentDecode(frag), &target))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid JSON Schema: cannot resolve \"%s\" \"%s\"",
							kw, ref),
					 errdetail("at %s/%s: the JSON pointer \"%s\" leads nowhere in \"%s\".",
							   from->loc, kw, frag, full)));
	}
	else
	{
		char	   *auri = psprintf("%s#%s", full, JsPercentDecode(frag));
		Anchor	   *a = FindAnchor(c, auri);

		if (a == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid JSON Schema: cannot resolve \"%s\" \"%s\"",
							kw, ref),
					 errdetail("at %s/%s: there is no anchor \"%s\" in \"%s\".",
							   from->loc, kw, frag, full)));
		target = a->target;
		if (anchor)
			*anchor = a;
	}
	ctx.base = res->uri;
	ctx.res = res;
	ctx.draft = res->draft;
	ctx.loc = psprintf("%s#%s", full, frag);
	return CompileValue(c, &target, &ctx, ctx.loc);
}

/* Compiles a subschema value found under "keyword" (loc for messages). */
SchemaNode *
JsCompileSub(Compiler *c, IndexEntry *e, JsonbValue *v, const char *what)
{
	if (v->type != jbvBool && !JsIsObject(v))
		JsBadSchema(e->loc, what, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
					"\"%s\" must be a schema (an object or a boolean)", what);
	return CompileValue(c, v, e, psprintf("%s/%s", e->loc, what));
}

/* Compiles an array of subschemas; empty arrays allowed if allow_empty. */
SchemaNode **
JsCompileSubArray(Compiler *c, IndexEntry *e, JsonbValue *v, const char *kw,
				  bool allow_empty, int *count)
{
	ContIter	it;
	JsonbValue	el;
	SchemaNode **arr;

	if (!JsIsArray(v) || (!allow_empty && JsonContainerSize(v->val.binary.data) == 0))
		JsBadSchema(e->loc, kw, NULL, "\"%s\" must be a %sarray of schemas", kw,
					allow_empty ? "" : "non-empty ");
	*count = JsonContainerSize(v->val.binary.data);
	arr = palloc0(sizeof(SchemaNode *) * Max(*count, 1));
	JsIterInit(&it, v->val.binary.data);
	while (JsIterNext(&it, NULL, &el))
		arr[it.i - 1] = JsCompileSub(c, e, &el, psprintf("%s/%d", kw, it.i - 1));
	return arr;
}

/*
 * Compiles a schema value (object or boolean), once per schema object: the
 * node is registered before its keywords are compiled, so a "$ref" back to
 * it (a cycle) finds it.  "ctx" gives the base URI for a schema object the
 * index walk did not reach (e.g. a pointer into an unknown keyword).
 */
static SchemaNode *
CompileValue(Compiler *c, JsonbValue *jv, IndexEntry *ctx, const char *loc)
{
	JsonbContainer *jc;
	IndexEntry *e;
	bool		found;
	SchemaNode *n;

	check_stack_depth();
	if (jv->type == jbvBool)
		return jv->val.boolean ? c->schema->true_node : c->schema->false_node;
	if (!JsIsObject(jv))
		JsBadSchema(loc, NULL, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
					"a schema must be an object or a boolean");
	jc = jv->val.binary.data;
	e = hash_search(c->index, &jc, HASH_ENTER, &found);
	if (!found)
	{
		e->base = pstrdup(ctx->base);
		e->res = ctx->res;
		e->draft = ctx->draft;
		e->loc = pstrdup(loc);
		e->node = NULL;
	}
	if (e->node)
		return e->node;
	n = palloc0(sizeof(SchemaNode));
	n->kind = NODE_OBJECT;
	n->draft = e->draft;
	n->res = e->res;
	n->loc = e->loc;
	e->node = n;
	JsCompileKeywords(c, n, e, jc);
	return n;
}

/*
 * Compiles a schema.  See jsonschema.h.
 */
EbSchema *
EbSchemaCompile(Jsonb *schema, EbSchemaResolver resolver, void *arg,
				MemoryContext parent)
{
	MemoryContext cxt;
	MemoryContext old;
	EbSchema   *s;

	cxt = AllocSetContextCreate(parent, "eventbus JSON Schema",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Compiler	c;
		HASHCTL		ctl;
		Jsonb	   *copy;
		JsonbValue	root;
		Resource   *res;
		IndexEntry	ctx;
		bool		more;
		MemoryContextCallback *cb;

		s = palloc0(sizeof(EbSchema));
		s->cxt = cxt;
		s->zero = int64_to_numeric(0);
		s->true_node = palloc0(sizeof(SchemaNode));
		s->true_node->kind = NODE_TRUE;
		s->false_node = palloc0(sizeof(SchemaNode));
		s->false_node->kind = NODE_FALSE;
		cb = palloc0(sizeof(MemoryContextCallback));
		cb->func = JsFreeRegexes;
		cb->arg = s;
		MemoryContextRegisterResetCallback(cxt, cb);

		memset(&c, 0, sizeof(c));
		c.schema = s;
		c.resolver = resolver;
		c.arg = arg;
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(void *);
		ctl.entrysize = sizeof(IndexEntry);
		ctl.hcxt = cxt;
		c.index = hash_create("eventbus JSON Schema index", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

		copy = palloc(VARSIZE(schema));
		memcpy(copy, schema, VARSIZE(schema));
		JsRootValue(copy, &root);
		if (root.type != jbvBool && !JsIsObject(&root))
			JsBadSchema("#", NULL, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
						"a schema must be an object or a boolean");
		res = AddResource(&c, DEFAULT_BASE_URI, &root, DRAFT_2020);
		IndexSchema(&c, &root, DEFAULT_BASE_URI, res, DRAFT_2020, "#", true);
		ctx.base = DEFAULT_BASE_URI;
		ctx.res = res;
		ctx.draft = res->draft;
		ctx.loc = "#";
		s->root = CompileValue(&c, &root, &ctx, "#");

		/* compile every dynamic anchor, for $dynamicRef at run time */
		do
		{
			ListCell   *lc;

			more = false;
			foreach(lc, c.anchors)
			{
				Anchor	   *a = lfirst(lc);

				if (a->dynamic && a->node == NULL)
				{
					ctx.base = a->res->uri;
					ctx.res = a->res;
					ctx.draft = a->res->draft;
					a->node = CompileValue(&c, &a->target, &ctx, a->uri);
					more = true;
				}
			}
		} while (more);

		hash_destroy(c.index);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return s;
}

/*
 * Frees a compiled schema.
 */
void
EbSchemaFree(EbSchema *schema)
{
	if (schema)
		MemoryContextDelete(schema->cxt);
}

/*
 * The memory context of a compiled schema.
 */
MemoryContext
EbSchemaContext(EbSchema *schema)
{
	return schema->cxt;
}
