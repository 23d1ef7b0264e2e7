/*-------------------------------------------------------------------------
 *
 * jsonschema_int.h
 *	  Internal declarations of the JSON Schema validator (src/jsonschema/):
 *	  the compiled schema graph, the compiler's and the validator's state,
 *	  and the functions its files share.  The rest of eventbus uses
 *	  src/jsonschema.h only.
 *
 * A schema is compiled once into a graph of SchemaNode structs that lives
 * in its own memory context: numbers stay Numeric datums pointing into a
 * private copy of the schema document, regular expressions are compiled
 * once, property names are sorted for binary search, and every "$ref" is
 * resolved at compile time to a pointer to the node it names.
 *
 * Validation walks the document's jsonb containers in place, reading the
 * JEntry arrays directly: a valid document allocates next to nothing.
 * Instance paths are kept as a stack of segments and only formatted into
 * text when a failure is reported.
 *
 * The files:
 *	 value.c			jsonb access without allocation, numbers, JSON equality
 *	 uri.c				URI resolution and JSON pointers
 *	 compile.c			resources, anchors, "$ref"; EbSchemaCompile
 *	 keywords.c			the keywords of a schema object, into its node
 *	 regex.c			ECMA-262 patterns: the ARE, and a fast matcher
 *	 validate.c			the validation walk and every keyword's check;
 *						EbSchemaValidate
 *	 failure.c			failures: messages and instance paths
 *	 unevaluated.c		unevaluatedItems/Properties
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_JSONSCHEMA_INT_H
#define EB_JSONSCHEMA_INT_H

#include "common/int.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "../jsonschema.h"

/* Drafts, for Resource.draft and SchemaNode.draft. */
#define DRAFT_2020		0
#define DRAFT_7			1

/* Type bits, for "type". */
#define T_NULL			0x01
#define T_BOOLEAN		0x02
#define T_OBJECT		0x04
#define T_ARRAY			0x08
#define T_NUMBER		0x10
#define T_STRING		0x20
#define T_INTEGER		0x40

#define NODE_OBJECT		0
#define NODE_TRUE		1
#define NODE_FALSE		2

typedef struct SchemaNode SchemaNode;
typedef struct FastRe FastRe;

/* A compiled regular expression and its source, for messages. */
typedef struct EbRegex
{
	regex_t		re;
	char	   *src;
	FastRe	   *fast;			/* the same pattern without the ARE, or NULL */
} EbRegex;

/* A schema resource: a document, or a subschema with an "$id". */
typedef struct Resource
{
	char	   *uri;			/* absolute, without fragment */
	JsonbValue	root;
	int			draft;
	List	   *dynanchors;		/* Anchor *, those from $dynamicAnchor */
} Resource;

/* A plain-name fragment: "$anchor", "$dynamicAnchor", draft-07 "$id": "#x" */
typedef struct Anchor
{
	char	   *uri;			/* resource URI "#" name */
	char	   *name;
	JsonbValue	target;
	Resource   *res;
	bool		dynamic;
	SchemaNode *node;			/* compiled target, for dynamic anchors */
} Anchor;

/* An entry of "properties" (or "dependentSchemas"/"dependentRequired"). */
typedef struct PropEntry
{
	const char *name;
	int			len;
	SchemaNode *node;			/* subschema, or NULL */
	const char **deps;			/* dependentRequired: required names */
	int		   *deplens;
	int			ndeps;
} PropEntry;

/* An entry of "patternProperties". */
typedef struct PatProp
{
	EbRegex    *re;
	SchemaNode *node;
} PatProp;

/* A number as m / 10^s, when "ok" (see NumDecode). */
typedef struct NumFast
{
	bool		ok;
	int			s;
	int64		m;
} NumFast;

/* One compiled schema object (or boolean schema). */
struct SchemaNode
{
	int			kind;			/* NODE_OBJECT, NODE_TRUE, NODE_FALSE */
	int			draft;
	Resource   *res;			/* resource the node belongs to */
	const char *loc;			/* where it is, for messages */

	SchemaNode *ref;			/* $ref */
	bool		ref_only;		/* draft-07: $ref hides its siblings */
	SchemaNode *dynref;			/* $dynamicRef, static target */
	const char *dynname;		/* its dynamic anchor name, if bookended */

	uint8		types;			/* 0: no "type" */
	JsonbValue *enumvals;
	int			nenum;
	bool		has_const;
	JsonbValue	constval;

	Numeric		multipleOf;
	Numeric		maximum;
	Numeric		exclusiveMaximum;
	Numeric		minimum;
	Numeric		exclusiveMinimum;
	NumFast		f_multipleOf;	/* the same, decoded */
	NumFast		f_maximum;
	NumFast		f_exclusiveMaximum;
	NumFast		f_minimum;
	NumFast		f_exclusiveMinimum;

	int64		maxLength;		/* -1: absent */
	int64		minLength;
	EbRegex    *pattern;

	SchemaNode **prefixItems;
	int			nprefix;
	SchemaNode *items;			/* items after the prefix */
	const char *items_kw;		/* "items" or "additionalItems" */
	SchemaNode *contains;
	int64		minContains;	/* default 1 */
	int64		maxContains;
	int64		maxItems;
	int64		minItems;
	bool		uniqueItems;

	PropEntry  *props;			/* sorted like jsonb keys */
	int			nprops;
	PatProp    *patprops;
	int			npatprops;
	SchemaNode *additionalProperties;
	SchemaNode *propertyNames;
	int64		maxProperties;
	int64		minProperties;
	const char **required;
	int		   *requiredlens;
	int			nrequired;
	PropEntry  *reqsorted;		/* the same, sorted like jsonb keys */
	PropEntry  *depreq;
	int			ndepreq;
	PropEntry  *depschemas;
	int			ndepschemas;

	SchemaNode **allOf;
	int			nallOf;
	SchemaNode **anyOf;
	int			nanyOf;
	SchemaNode **oneOf;
	int			noneOf;
	SchemaNode *not;
	SchemaNode *if_;
	SchemaNode *then_;
	SchemaNode *else_;

	SchemaNode *unevaluatedItems;
	SchemaNode *unevaluatedProperties;
};

struct EbSchema
{
	MemoryContext cxt;
	SchemaNode *root;
	SchemaNode *true_node;
	SchemaNode *false_node;
	List	   *regexes;		/* EbRegex *, freed with the context */
	Numeric		zero;
};

/* Compile-time index entry: one per schema object, keyed by address. */
typedef struct IndexEntry
{
	const void *key;
	char	   *base;
	Resource   *res;
	int			draft;
	char	   *loc;
	SchemaNode *node;
} IndexEntry;

/* Compile-time state. */
typedef struct Compiler
{
	EbSchema   *schema;
	EbSchemaResolver resolver;
	void	   *arg;
	List	   *resources;		/* Resource * */
	List	   *anchors;		/* Anchor * */
	HTAB	   *index;
} Compiler;

/* One step of an instance path: a key, or an array index. */
typedef struct PathSeg
{
	const char *key;			/* NULL for an index */
	int			keylen;
	int			index;
} PathSeg;

#define INLINE_STACK 32

/* Validation state. */
typedef struct VState
{
	EbSchema   *schema;
	bool		all;
	bool		collect;
	List	   *errors;
	int			nerrors;
	int			quiet;			/* > 0 inside anyOf/oneOf/not/if/contains */
	int			apply_depth;
	int64		applications;	/* schema applications so far */
	/* Nodes applied at the current instance location: a node that comes
	 * back there has consumed no input and would recurse forever. */
	SchemaNode **loc;
	int			loc_base;		/* where the current location's nodes start */
	int			loc_top;
	int			loc_cap;
	PathSeg    *path;
	int			npath;
	int			pathcap;
	Resource  **dynscope;
	int			ndyn;
	int			dyncap;
	PathSeg		path_inline[INLINE_STACK];
	Resource   *dyn_inline[INLINE_STACK];
	SchemaNode *loc_inline[INLINE_STACK];
} VState;

/* Evaluated items or properties of one instance, by position. */
typedef struct Annot
{
	int			n;
	bool	   *marks;
} Annot;

/* Iterator over an object's pairs or an array's elements. */
typedef struct ContIter
{
	JsonbContainer *jc;
	int			n;
	int			i;
	char	   *base_addr;
	uint32		koff;
	uint32		voff;
	bool		object;
} ContIter;

/* ---------------------------------------------------------------------
 * Small helpers, inline in every file that uses them: they are on the
 * validator's hot path
 * ---------------------------------------------------------------------
 */

/* Is this value an object? */
static inline bool
JsIsObject(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* Is this value an array? */
static inline bool
JsIsArray(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* Compares two Numerics. */
static inline int
JsNumCmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* Compares two keys in jsonb's key order: length first, then bytes. */
static inline int
JsKeyCmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* Powers of ten that fit an int64, for JsNumAlign. */
static const int64 js_pow10[] = {
	INT64CONST(1), INT64CONST(10), INT64CONST(100), INT64CONST(1000),
	INT64CONST(10000), INT64CONST(100000), INT64CONST(1000000),
	INT64CONST(10000000), INT64CONST(100000000), INT64CONST(1000000000),
	INT64CONST(10000000000), INT64CONST(100000000000),
	INT64CONST(1000000000000), INT64CONST(10000000000000),
	INT64CONST(100000000000000), INT64CONST(1000000000000000),
	INT64CONST(10000000000000000), INT64CONST(100000000000000000),
	INT64CONST(1000000000000000000)
};

/* Brings a and b to a common scale; false on overflow. */
static inline bool
JsNumAlign(const NumFast *a, const NumFast *b, int64 *x, int64 *y)
{
	*x = a->m;
	*y = b->m;
	if (a->s < b->s)
		return !pg_mul_s64_overflow(*x, js_pow10[b->s - a->s], x);
	if (b->s < a->s)
		return !pg_mul_s64_overflow(*y, js_pow10[a->s - b->s], y);
	return true;
}

/* Compares two numbers, using the decoded forms (value.c) when they serve. */
static inline int
JsNumCmpFast(Numeric a, const NumFast *fa, Numeric b, const NumFast *fb)
{
	int64		x,
				y;

	if (fa->ok && fb->ok && JsNumAlign(fa, fb, &x, &y))
	{
		int			res = (x > y) - (x < y);

		Assert(res == (JsNumCmp(a, b) > 0) - (JsNumCmp(a, b) < 0));
		return res;
	}
	return JsNumCmp(a, b);
}

/* Will a failure be reported (and so is its message worth building)? */
static inline bool
JsReporting(VState *st)
{
	return st->collect && st->quiet == 0 && (st->all || st->nerrors == 0);
}

/* May validation go on after a failure (to collect more)? */
static inline bool
JsCanContinue(VState *st)
{
	return st->all && st->collect && st->quiet == 0;
}

/* Frees an annotation set. */
static inline void
JsFreeAnnot(Annot *a)
{
	if (a)
	{
		pfree(a->marks);
		pfree(a);
	}
}

/* Makes an empty annotation set for an instance of n items/properties. */
static inline Annot *
JsNewAnnot(int n)
{
	Annot	   *a = palloc(sizeof(Annot));

	a->n = n;
	a->marks = palloc0(Max(n, 1));
	return a;
}

/* Adds the marks of src to dst. */
static inline void
JsMergeAnnot(Annot *dst, Annot *src)
{
	int			i;

	for (i = 0; i < dst->n; i++)
		dst->marks[i] |= src->marks[i];
}

/* Reports a failure, building the message only if it will be kept. */
#define FAIL(st, ...) \
	do { if (JsReporting(st)) JsFail((st), __VA_ARGS__); } while (0)

/* ---- value.c: jsonb access without allocation, numbers ---- */
extern void JsIterInit(ContIter *it, JsonbContainer *jc);
extern bool JsIterNext(ContIter *it, JsonbValue *key, JsonbValue *val);
extern void JsRootValue(Jsonb *jb, JsonbValue *out);
extern bool JsGetKey(JsonbContainer *jc, const char *key, JsonbValue *out);
extern bool JsNumIsIntegral(Numeric n);
extern char *JsNumStr(Numeric n);
extern void JsNumDecode(Numeric num, NumFast *f);
extern bool JsNumIsMultiple(Numeric num, const NumFast *fn, Numeric mult,
							const NumFast *fm, Numeric zero);
extern bool JsNumIsIntegralFast(Numeric n);
extern bool JsEqual(JsonbValue *a, JsonbValue *b);

/* ---- uri.c: URIs and JSON pointers ---- */
extern char *JsResolveUri(const char *base, const char *ref);
extern char *JsPercentDecode(const char *s);
extern char *JsPointerToken(const char *key, int len);
extern bool JsPointerLookup(JsonbValue *root, const char *ptr, JsonbValue *out);

/* ---- compile.c: the compiler ---- */
extern void JsBadSchema(const char *loc, const char *keyword, const char *hint,
						const char *fmt,...) pg_attribute_printf(4, 5);
extern SchemaNode *JsCompileRef(Compiler *c, IndexEntry *from, const char *kw,
								JsonbValue *refv, Anchor **anchor);
extern SchemaNode *JsCompileSub(Compiler *c, IndexEntry *e, JsonbValue *v,
								const char *what);
extern SchemaNode **JsCompileSubArray(Compiler *c, IndexEntry *e, JsonbValue *v,
									  const char *kw, bool allow_empty, int *count);

/* ---- keywords.c: the keywords of a schema object ---- */
extern void JsCompileKeywords(Compiler *c, SchemaNode *n, IndexEntry *e,
							  JsonbContainer *jc);

/* ---- regex.c: regular expressions ---- */
extern void JsFreeRegexes(void *arg);
extern EbRegex *JsCompileRegex(Compiler *c, IndexEntry *e, const char *kw,
							   const char *src, int len);
extern bool JsRegexMatch(EbRegex *r, const char *s, int len);

/* ---- validate.c: the validation walk ---- */
extern bool JsValidateChild(VState *st, SchemaNode *node, JsonbValue *v,
							const char *key, int keylen, int index);

/* ---- failure.c: failures ---- */
extern void JsFail(VState *st, const char *keyword, const char *fmt,...) pg_attribute_printf(3, 4);
extern const char *JsValueTypeName(JsonbValue *v);
extern char *JsTypeMaskNames(uint8 mask);

/* ---- unevaluated.c: unevaluatedItems/Properties ---- */
extern bool JsValidateUnevaluated(VState *st, SchemaNode *n, JsonbValue *v,
								  Annot *a);

#endif							/* EB_JSONSCHEMA_INT_H */
