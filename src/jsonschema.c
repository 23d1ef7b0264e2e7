/*-------------------------------------------------------------------------
 *
 * jsonschema.c
 *	  JSON Schema (draft 2020-12, and draft-07) validation of jsonb values.
 *
 * A schema is compiled once into a graph of SchemaNode structs that lives
 * in its own memory context: numbers stay Numeric datums pointing into a
 * private copy of the schema document, regular expressions are compiled
 * once, property names are sorted for binary search, and every "$ref" is
 * resolved at compile time to a pointer to the node it names.  Each schema
 * object is compiled once (nodes are keyed by their container address), so
 * cyclic schemas compile to cyclic graphs in finite time.
 *
 * Validation walks the document's jsonb containers in place, reading the
 * JEntry arrays directly: a valid document allocates next to nothing.
 * Instance paths are kept as a stack of segments and only formatted into
 * text when a failure is reported.
 *
 * Why numeric: JSON numbers are arbitrary-precision decimals; doubles give
 * wrong answers for multipleOf (0.0075 is a multiple of 0.0001) and for
 * large numbers, so all arithmetic uses numeric functions.
 *
 * Annotations: unevaluatedItems and unevaluatedProperties need to know
 * which items and properties the adjacent keywords and in-place
 * applicators evaluated.  A schema that has one of them passes an
 * "Annot" (one flag per item or property) down through its in-place
 * applicators; a subschema's marks are kept only when it is valid.
 *
 * Recursion: a "$ref" cycle that consumes no input (e.g. {"$ref": "#"})
 * would loop forever; the number of nested schema applications at one
 * instance location is capped, and exceeding it is a validation failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_collation.h"
#include "common/int.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "jsonschema.h"

#define DRAFT_2020		0
#define DRAFT_7			1

/* Base URI of a schema without "$id". */
#define DEFAULT_BASE_URI "https://eventbus.invalid/schema.json"

/* Nested schema applications allowed at one instance location. */
#define MAX_APPLY_DEPTH 200
/* Schema applications one validation may make: a cap against schemas whose
 * combinators nest into exponential work (e.g. anyOf of anyOf of ...). */
#define MAX_APPLICATIONS 10000000

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

static SchemaNode *CompileValue(Compiler *c, JsonbValue *jv, IndexEntry *ctx,
								const char *loc);
static bool ValidateNode(VState *st, SchemaNode *node, JsonbValue *v, Annot *ann);

/* ---------------------------------------------------------------------
 * jsonb access without allocation
 * ---------------------------------------------------------------------
 */

/* Fills a JsonbValue from child "index" of a container, like jsonb_util.c. */
static void
FillValue(JsonbContainer *c, int index, char *base_addr, uint32 offset,
		  JsonbValue *r)
{
	JEntry		entry = c->children[index];

	if (JBE_ISNULL(entry))
		r->type = jbvNull;
	else if (JBE_ISSTRING(entry))
	{
		r->type = jbvString;
		r->val.string.val = base_addr + offset;
		r->val.string.len = getJsonbLength(c, index);
	}
	else if (JBE_ISNUMERIC(entry))
	{
		r->type = jbvNumeric;
		r->val.numeric = (Numeric) (base_addr + INTALIGN(offset));
	}
	else if (JBE_ISBOOL_TRUE(entry))
	{
		r->type = jbvBool;
		r->val.boolean = true;
	}
	else if (JBE_ISBOOL_FALSE(entry))
	{
		r->type = jbvBool;
		r->val.boolean = false;
	}
	else
	{
		r->type = jbvBinary;
		r->val.binary.data = (JsonbContainer *) (base_addr + INTALIGN(offset));
		r->val.binary.len = getJsonbLength(c, index) -
			(INTALIGN(offset) - offset);
	}
}

/* Starts iterating over a container's pairs (object) or elements (array). */
static void
IterInit(ContIter *it, JsonbContainer *jc)
{
	it->jc = jc;
	it->n = JsonContainerSize(jc);
	it->i = 0;
	it->object = JsonContainerIsObject(jc);
	it->koff = 0;
	if (it->object)
	{
		it->base_addr = (char *) &jc->children[it->n * 2];
		it->voff = it->n > 0 ? getJsonbOffset(jc, it->n) : 0;
	}
	else
	{
		it->base_addr = (char *) &jc->children[it->n];
		it->voff = 0;
	}
}

/* Returns the next pair (key may be NULL for arrays); false at the end. */
static bool
IterNext(ContIter *it, JsonbValue *key, JsonbValue *val)
{
	JsonbContainer *jc = it->jc;

	if (it->i >= it->n)
		return false;
	if (it->object)
	{
		if (key)
			FillValue(jc, it->i, it->base_addr, it->koff, key);
		FillValue(jc, it->i + it->n, it->base_addr, it->voff, val);
		JBE_ADVANCE_OFFSET(it->koff, jc->children[it->i]);
		JBE_ADVANCE_OFFSET(it->voff, jc->children[it->i + it->n]);
	}
	else
	{
		FillValue(jc, it->i, it->base_addr, it->voff, val);
		JBE_ADVANCE_OFFSET(it->voff, jc->children[it->i]);
	}
	it->i++;
	return true;
}

/* Sets "out" to the top-level value of a jsonb (unwrapping scalars). */
static void
JsonbRootValue(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		ContIter	it;

		IterInit(&it, &jb->root);
		IterNext(&it, NULL, out);
	}
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/* Looks up a key of an object container; false if absent. */
static bool
GetKey(JsonbContainer *jc, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(jc, key, strlen(key), out) != NULL;
}

/* Is this value an object? */
static inline bool
IsObject(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* Is this value an array? */
static inline bool
IsArray(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* Compares two Numerics. */
static inline int
NumCmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* Is this number integral (1.0 counts)? */
static bool
NumIsIntegral(Numeric n)
{
	return DatumGetInt32(DirectFunctionCall1(numeric_min_scale,
											 NumericGetDatum(n))) == 0;
}

/* Formats a Numeric, for messages. */
static char *
NumStr(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/*
 * Exact fast paths for small numbers.
 *
 * Most numbers in schemas and documents (prices, counts, bounds) are short
 * decimals: they fit a scaled int64, value = m / 10^s.  Comparing two such
 * numbers, or testing divisibility, then needs no numeric arithmetic and no
 * allocation.  Numbers that do not fit (and NaN, infinities) take the
 * numeric functions, so results are exact either way.
 *
 * The decoding reads numeric's on-disk format (src/backend/utils/adt/
 * numeric.c), which is fixed by pg_upgrade compatibility: after the varlena
 * header, a uint16 header word, then (long format only) an int16 weight,
 * then base-10000 int16 digits; value = sum(d[i] * 10000^(weight - i)).
 */
#define NUMF_SIGN_MASK			0xC000
#define NUMF_NEG				0x4000
#define NUMF_SHORT				0x8000
#define NUMF_SPECIAL			0xC000
#define NUMF_SHORT_SIGN_MASK	0x2000
#define NUMF_SHORT_WEIGHT_SIGN	0x0040
#define NUMF_SHORT_WEIGHT_MASK	0x003F

static const int64 pow10_tab[] = {
	INT64CONST(1), INT64CONST(10), INT64CONST(100), INT64CONST(1000),
	INT64CONST(10000), INT64CONST(100000), INT64CONST(1000000),
	INT64CONST(10000000), INT64CONST(100000000), INT64CONST(1000000000),
	INT64CONST(10000000000), INT64CONST(100000000000),
	INT64CONST(1000000000000), INT64CONST(10000000000000),
	INT64CONST(100000000000000), INT64CONST(1000000000000000),
	INT64CONST(10000000000000000), INT64CONST(100000000000000000),
	INT64CONST(1000000000000000000)
};

/*
 * Reads the digits of a finite numeric; false for NaN/infinity or a datum
 * not in plain 4-byte-header form.
 */
static inline bool
NumDigits(Numeric num, const int16 **digits, int *ndigits, int *weight,
		  bool *neg)
{
	struct varlena *vl = (struct varlena *) num;
	uint16		hdr;
	const char *data;
	int			hdrsz;

	if (!VARATT_IS_4B_U(vl))
		return false;
	data = VARDATA(vl);
	memcpy(&hdr, data, sizeof(uint16));
	if ((hdr & NUMF_SIGN_MASK) == NUMF_SPECIAL)
		return false;
	if ((hdr & NUMF_SIGN_MASK) == NUMF_SHORT)
	{
		*neg = (hdr & NUMF_SHORT_SIGN_MASK) != 0;
		*weight = (hdr & NUMF_SHORT_WEIGHT_SIGN) ?
			(~NUMF_SHORT_WEIGHT_MASK | (hdr & NUMF_SHORT_WEIGHT_MASK)) :
			(hdr & NUMF_SHORT_WEIGHT_MASK);
		hdrsz = sizeof(uint16);
	}
	else
	{
		int16		w;

		*neg = (hdr & NUMF_SIGN_MASK) == NUMF_NEG;
		memcpy(&w, data + sizeof(uint16), sizeof(int16));
		*weight = w;
		hdrsz = sizeof(uint16) + sizeof(int16);
	}
	*digits = (const int16 *) (data + hdrsz);
	*ndigits = (VARSIZE(vl) - VARHDRSZ - hdrsz) / sizeof(int16);
	return true;
}

/* Decodes a numeric into m / 10^s; f->ok is false if it does not fit. */
static void
NumDecode(Numeric num, NumFast *f)
{
	const int16 *d;
	int			nd,
				weight,
				i,
				elast;
	bool		neg;
	int64		m = 0;

	f->ok = false;
	if (!NumDigits(num, &d, &nd, &weight, &neg))
		return;
	if (nd == 0)
	{
		f->m = 0;
		f->s = 0;
		f->ok = true;
		return;
	}
	elast = weight - (nd - 1);	/* base-10000 exponent of the last digit */
	if (weight > 4 || elast < -4)
		return;
	for (i = 0; i < nd; i++)
	{
		if (pg_mul_s64_overflow(m, 10000, &m) ||
			pg_add_s64_overflow(m, d[i], &m))
			return;
	}
	if (elast > 0)
	{
		for (i = 0; i < elast; i++)
			if (pg_mul_s64_overflow(m, 10000, &m))
				return;
		f->s = 0;
	}
	else
		f->s = -4 * elast;
	while (f->s > 0 && m % 10 == 0)
	{
		m /= 10;
		f->s--;
	}
	f->m = neg ? -m : m;
	f->ok = true;
}

/* Brings a and b to a common scale; false on overflow. */
static inline bool
NumAlign(const NumFast *a, const NumFast *b, int64 *x, int64 *y)
{
	*x = a->m;
	*y = b->m;
	if (a->s < b->s)
		return !pg_mul_s64_overflow(*x, pow10_tab[b->s - a->s], x);
	if (b->s < a->s)
		return !pg_mul_s64_overflow(*y, pow10_tab[a->s - b->s], y);
	return true;
}

/* Compares two numbers, using the decoded forms when they serve. */
static inline int
NumCmpFast(Numeric a, const NumFast *fa, Numeric b, const NumFast *fb)
{
	int64		x,
				y;

	if (fa->ok && fb->ok && NumAlign(fa, fb, &x, &y))
	{
		int			res = (x > y) - (x < y);

		Assert(res == (NumCmp(a, b) > 0) - (NumCmp(a, b) < 0));
		return res;
	}
	return NumCmp(a, b);
}

/* Is "num" a multiple of "mult", by numeric_mod? */
static bool
NumIsMultipleSlow(Numeric num, Numeric mult, Numeric zero)
{
	return NumCmp(DatumGetNumeric(DirectFunctionCall2(numeric_mod,
													  NumericGetDatum(num),
													  NumericGetDatum(mult))),
				  zero) == 0;
}

/* Is "num" a multiple of "mult" (> 0)? */
static inline bool
NumIsMultiple(Numeric num, const NumFast *fn, Numeric mult, const NumFast *fm,
			  Numeric zero)
{
	int64		x,
				y;

	if (fn->ok && fm->ok && fm->m > 0 && NumAlign(fn, fm, &x, &y))
	{
		Assert((x % y == 0) == NumIsMultipleSlow(num, mult, zero));
		return x % y == 0;
	}
	return NumIsMultipleSlow(num, mult, zero);
}


/* Is this number integral (1.0 counts)? */
static bool
NumIsIntegralFast(Numeric n)
{
	const int16 *d;
	int			nd,
				weight,
				i;
	bool		neg;

	if (!NumDigits(n, &d, &nd, &weight, &neg))
		return NumIsIntegral(n);
	/* digits past the point: index > weight */
	for (i = Max(weight + 1, 0); i < nd; i++)
		if (d[i] != 0)
		{
			Assert(!NumIsIntegral(n));
			return false;
		}
	Assert(NumIsIntegral(n));
	return true;
}

/* Compares two JSON values for JSON equality (1 == 1.0, key order free). */
static bool
JsonEqual(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvNumeric:
			{
				NumFast		fa,
							fb;

				NumDecode(a->val.numeric, &fa);
				NumDecode(b->val.numeric, &fb);
				return NumCmpFast(a->val.numeric, &fa,
								  b->val.numeric, &fb) == 0;
			}
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val,
					   a->val.string.len) == 0;
		case jbvBinary:
			{
				JsonbContainer *ca = a->val.binary.data;
				JsonbContainer *cb = b->val.binary.data;
				ContIter	ia,
							ib;
				JsonbValue	ka,
							va,
							kb,
							vb;

				if (JsonContainerIsObject(ca) != JsonContainerIsObject(cb) ||
					JsonContainerSize(ca) != JsonContainerSize(cb))
					return false;
				IterInit(&ia, ca);
				IterInit(&ib, cb);
				/* jsonb stores keys sorted, so pairs line up */
				while (IterNext(&ia, &ka, &va))
				{
					IterNext(&ib, &kb, &vb);
					if (ia.object && !JsonEqual(&ka, &kb))
						return false;
					if (!JsonEqual(&va, &vb))
						return false;
				}
				return true;
			}
		default:
			return false;
	}
}

/* Compares two keys in jsonb's key order: length first, then bytes. */
static int
KeyCmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* qsort comparator for PropEntry. */
static int
PropEntryCmp(const void *a, const void *b)
{
	const PropEntry *pa = a;
	const PropEntry *pb = b;

	return KeyCmp(pa->name, pa->len, pb->name, pb->len);
}

/* ---------------------------------------------------------------------
 * URIs
 * ---------------------------------------------------------------------
 */

/* A parsed URI reference; NULL members are absent (path never is). */
typedef struct Uri
{
	char	   *scheme;
	char	   *auth;
	char	   *path;
	char	   *query;
	char	   *frag;
} Uri;

/* Splits a URI reference into its five parts (RFC 3986, appendix B). */
static void
ParseUri(const char *s, Uri *u)
{
	const char *p = s;
	const char *q = s;

	memset(u, 0, sizeof(Uri));
	if (isalpha((unsigned char) *q))
	{
		while (isalnum((unsigned char) *q) || *q == '+' || *q == '-' || *q == '.')
			q++;
		if (*q == ':')
		{
			u->scheme = pnstrdup(p, q - p);
			p = q + 1;
		}
	}
	if (p[0] == '/' && p[1] == '/')
	{
		p += 2;
		q = p;
		while (*q && *q != '/' && *q != '?' && *q != '#')
			q++;
		u->auth = pnstrdup(p, q - p);
		p = q;
	}
	q = p;
	while (*q && *q != '?' && *q != '#')
		q++;
	u->path = pnstrdup(p, q - p);
	p = q;
	if (*p == '?')
	{
		p++;
		q = p;
		while (*q && *q != '#')
			q++;
		u->query = pnstrdup(p, q - p);
		p = q;
	}
	if (*p == '#')
		u->frag = pstrdup(p + 1);
}

/* Removes "." and ".." segments from a path (RFC 3986, 5.2.4). */
static char *
RemoveDots(const char *in)
{
	StringInfoData out;
	const char *p = in;

	initStringInfo(&out);
	while (*p)
	{
		if (strncmp(p, "../", 3) == 0)
			p += 3;
		else if (strncmp(p, "./", 2) == 0)
			p += 2;
		else if (strncmp(p, "/./", 3) == 0)
			p += 2;
		else if (strcmp(p, "/.") == 0)
			p = "/";
		else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0)
		{
			char	   *slash;

			p = (p[3] == '/') ? p + 3 : "/";
			out.data[out.len] = '\0';
			slash = strrchr(out.data, '/');
			out.len = slash ? slash - out.data : 0;
			out.data[out.len] = '\0';
		}
		else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0)
			break;
		else
		{
			const char *q = (*p == '/') ? p + 1 : p;

			while (*q && *q != '/')
				q++;
			appendBinaryStringInfo(&out, p, q - p);
			p = q;
		}
	}
	return out.data;
}

/* Resolves a URI reference against a base URI (RFC 3986, 5.2.2). */
static char *
ResolveUri(const char *base, const char *ref)
{
	Uri			b,
				r,
				t;
	StringInfoData out;

	ParseUri(ref, &r);
	memset(&t, 0, sizeof(Uri));
	if (r.scheme)
	{
		t = r;
		t.path = RemoveDots(r.path);
	}
	else
	{
		ParseUri(base, &b);
		if (r.auth)
		{
			t.auth = r.auth;
			t.path = RemoveDots(r.path);
			t.query = r.query;
		}
		else
		{
			if (r.path[0] == '\0')
			{
				t.path = b.path;
				t.query = r.query ? r.query : b.query;
			}
			else
			{
				if (r.path[0] == '/')
					t.path = RemoveDots(r.path);
				else
				{
					char	   *merged;

					if (b.auth && b.path[0] == '\0')
						merged = psprintf("/%s", r.path);
					else
					{
						char	   *slash = strrchr(b.path, '/');

						if (slash)
							merged = psprintf("%.*s%s",
											  (int) (slash - b.path + 1),
											  b.path, r.path);
						else
							merged = pstrdup(r.path);
					}
					t.path = RemoveDots(merged);
				}
				t.query = r.query;
			}
			t.auth = b.auth;
		}
		t.scheme = b.scheme;
	}
	t.frag = r.frag;

	initStringInfo(&out);
	if (t.scheme)
		appendStringInfo(&out, "%s:", t.scheme);
	if (t.auth)
		appendStringInfo(&out, "//%s", t.auth);
	appendStringInfoString(&out, t.path);
	if (t.query)
		appendStringInfo(&out, "?%s", t.query);
	if (t.frag)
		appendStringInfo(&out, "#%s", t.frag);
	return out.data;
}

/* Decodes %XX escapes. */
static char *
PercentDecode(const char *s)
{
	StringInfoData out;

	initStringInfo(&out);
	for (; *s; s++)
	{
		if (s[0] == '%' && isxdigit((unsigned char) s[1]) &&
			isxdigit((unsigned char) s[2]))
		{
			char		hex[3] = {s[1], s[2], '\0'};

			appendStringInfoChar(&out, (char) strtol(hex, NULL, 16));
			s += 2;
		}
		else
			appendStringInfoChar(&out, *s);
	}
	return out.data;
}

/* Escapes a key as a JSON pointer token (~ and /). */
static char *
PointerToken(const char *key, int len)
{
	StringInfoData out;
	int			i;

	initStringInfo(&out);
	for (i = 0; i < len; i++)
	{
		if (key[i] == '~')
			appendStringInfoString(&out, "~0");
		else if (key[i] == '/')
			appendStringInfoString(&out, "~1");
		else
			appendStringInfoChar(&out, key[i]);
	}
	return out.data;
}

/* Follows a JSON pointer ("/a/0/b") from a value; false if it leads nowhere. */
static bool
PointerLookup(JsonbValue *root, const char *ptr, JsonbValue *out)
{
	JsonbValue	cur = *root;
	const char *p = ptr;

	while (*p == '/')
	{
		StringInfoData tok;
		JsonbContainer *jc;

		p++;
		initStringInfo(&tok);
		while (*p && *p != '/')
		{
			if (p[0] == '~' && p[1] == '0')
			{
				appendStringInfoChar(&tok, '~');
				p += 2;
			}
			else if (p[0] == '~' && p[1] == '1')
			{
				appendStringInfoChar(&tok, '/');
				p += 2;
			}
			else
				appendStringInfoChar(&tok, *p++);
		}
		if (cur.type != jbvBinary)
			return false;
		jc = cur.val.binary.data;
		if (JsonContainerIsObject(jc))
		{
			JsonbValue	next;

			if (!getKeyJsonValueFromContainer(jc, tok.data, tok.len, &next))
				return false;
			cur = next;
		}
		else
		{
			int64		idx = 0;
			JsonbValue *el;

			/* RFC 6901 array index: "0", or digits without a leading zero. */
			if (tok.len == 0 || tok.len > 9 || (tok.len > 1 && tok.data[0] == '0'))
				return false;
			for (int d = 0; d < tok.len; d++)
			{
				if (tok.data[d] < '0' || tok.data[d] > '9')
					return false;
				idx = idx * 10 + (tok.data[d] - '0');
			}
			el = getIthJsonbValueFromContainer(jc, (uint32) idx);
			if (el == NULL)
				return false;
			cur = *el;
		}
	}
	if (*p != '\0')
		return false;
	*out = cur;
	return true;
}

/* ---------------------------------------------------------------------
 * Compiler
 * ---------------------------------------------------------------------
 */

/* Raises the invalid-schema ERROR for a keyword of a schema object. */
static void
BadSchema(const char *loc, const char *keyword, const char *hint,
		  const char *fmt,...)
pg_attribute_printf(4, 5);

/* Raises the invalid-schema ERROR for a keyword of a schema object. */
static void
BadSchema(const char *loc, const char *keyword, const char *hint,
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
		BadSchema(loc, "$schema",
				  "Use \"https://json-schema.org/draft/2020-12/schema\" or \"http://json-schema.org/draft-07/schema#\".",
				  "unsupported \"$schema\" \"%s\"", s);
	}
	BadSchema(loc, "$schema", NULL, "\"$schema\" must be a string");
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
	if (!IsObject(jv))
		return;
	jc = jv->val.binary.data;

	has_id = GetKey(jc, "$id", &idv);
	has_ref = GetKey(jc, "$ref", &v);
	if ((docroot || has_id) && GetKey(jc, "$schema", &v))
	{
		draft = ParseDraft(&v, loc);
		if (docroot)
			res->draft = draft;
	}
	if (has_id && !(draft == DRAFT_7 && has_ref))
	{
		char	   *id;

		if (idv.type != jbvString)
			BadSchema(loc, "$id", NULL, "\"$id\" must be a string");
		id = pnstrdup(idv.val.string.val, idv.val.string.len);
		if (draft == DRAFT_7 && id[0] == '#')
			AddAnchor(c, base, id + 1, jv, res, false);
		else
		{
			char	   *full = ResolveUri(base, id);
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
		if (GetKey(jc, "$anchor", &v))
		{
			if (v.type != jbvString)
				BadSchema(loc, "$anchor", NULL, "\"$anchor\" must be a string");
			AddAnchor(c, newbase, pnstrdup(v.val.string.val, v.val.string.len),
					  jv, res, false);
		}
		if (GetKey(jc, "$dynamicAnchor", &v))
		{
			if (v.type != jbvString)
				BadSchema(loc, "$dynamicAnchor", NULL,
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
		if (GetKey(jc, single_kws[k], &v) && IsObject(&v))
			IndexSchema(c, &v, newbase, res, draft,
						psprintf("%s/%s", loc, single_kws[k]), false);
	}
	for (k = 0; array_kws[k]; k++)
	{
		if (GetKey(jc, array_kws[k], &v) && IsArray(&v))
		{
			ContIter	it;
			JsonbValue	el;

			IterInit(&it, v.val.binary.data);
			while (IterNext(&it, NULL, &el))
				IndexSchema(c, &el, newbase, res, draft,
							psprintf("%s/%s/%d", loc, array_kws[k], it.i - 1),
							false);
		}
	}
	for (k = 0; map_kws[k]; k++)
	{
		if (GetKey(jc, map_kws[k], &v) && IsObject(&v))
		{
			ContIter	it;
			JsonbValue	key,
						el;

			IterInit(&it, v.val.binary.data);
			while (IterNext(&it, &key, &el))
				IndexSchema(c, &el, newbase, res, draft,
							psprintf("%s/%s/%s", loc, map_kws[k],
									 PointerToken(key.val.string.val,
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
	JsonbRootValue(copy, &root);
	res = AddResource(c, uri, &root, draft);
	IndexSchema(c, &root, uri, res, draft, psprintf("%s#", uri), true);
	return res;
}

/*
 * Resolves a "$ref" (or "$dynamicRef") and compiles its target.  Sets
 * *anchor to the anchor the fragment named, if it named one.
 */
static SchemaNode *
CompileRef(Compiler *c, IndexEntry *from, const char *kw, JsonbValue *refv,
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
		BadSchema(from->loc, kw, NULL, "\"%s\" must be a string", kw);
	ref = pnstrdup(refv->val.string.val, refv->val.string.len);
	full = ResolveUri(from->base, ref);
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
		if (!PointerLookup(&res->root, PercentDecode(frag), &target))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid JSON Schema: cannot resolve \"%s\" \"%s\"",
							kw, ref),
					 errdetail("at %s/%s: the JSON pointer \"%s\" leads nowhere in \"%s\".",
							   from->loc, kw, frag, full)));
	}
	else
	{
		char	   *auri = psprintf("%s#%s", full, PercentDecode(frag));
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
static SchemaNode *
CompileSub(Compiler *c, IndexEntry *e, JsonbValue *v, const char *what)
{
	if (v->type != jbvBool && !IsObject(v))
		BadSchema(e->loc, what, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
				  "\"%s\" must be a schema (an object or a boolean)", what);
	return CompileValue(c, v, e, psprintf("%s/%s", e->loc, what));
}

/* Compiles an array of subschemas; empty arrays allowed if allow_empty. */
static SchemaNode **
CompileSubArray(Compiler *c, IndexEntry *e, JsonbValue *v, const char *kw,
				bool allow_empty, int *count)
{
	ContIter	it;
	JsonbValue	el;
	SchemaNode **arr;

	if (!IsArray(v) || (!allow_empty && JsonContainerSize(v->val.binary.data) == 0))
		BadSchema(e->loc, kw, NULL, "\"%s\" must be a %sarray of schemas", kw,
				  allow_empty ? "" : "non-empty ");
	*count = JsonContainerSize(v->val.binary.data);
	arr = palloc0(sizeof(SchemaNode *) * Max(*count, 1));
	IterInit(&it, v->val.binary.data);
	while (IterNext(&it, NULL, &el))
		arr[it.i - 1] = CompileSub(c, e, &el, psprintf("%s/%d", kw, it.i - 1));
	return arr;
}

/* Reads a non-negative integer keyword (2.0 is accepted); -1 if absent. */
static int64
GetCount(IndexEntry *e, JsonbContainer *jc, const char *kw)
{
	JsonbValue	v;
	Numeric		big;

	if (!GetKey(jc, kw, &v))
		return -1;
	if (v.type != jbvNumeric || !NumIsIntegral(v.val.numeric) ||
		NumCmp(v.val.numeric, int64_to_numeric(0)) < 0)
		BadSchema(e->loc, kw, NULL, "\"%s\" must be a non-negative integer", kw);
	big = int64_to_numeric(PG_INT64_MAX / 2);
	if (NumCmp(v.val.numeric, big) > 0)
		return PG_INT64_MAX / 2;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v.val.numeric)));
}

/* Reads a number keyword; NULL if absent. */
static Numeric
GetNumber(IndexEntry *e, JsonbContainer *jc, const char *kw)
{
	JsonbValue	v;

	if (!GetKey(jc, kw, &v))
		return NULL;
	if (v.type != jbvNumeric)
		BadSchema(e->loc, kw, NULL, "\"%s\" must be a number", kw);
	return v.val.numeric;
}

/* Frees the compiled regular expressions (a memory context callback). */
static void
FreeRegexes(void *arg)
{
	EbSchema   *s = arg;
	ListCell   *lc;

	foreach(lc, s->regexes)
		pg_regfree(&((EbRegex *) lfirst(lc))->re);
	s->regexes = NIL;
}

/* ECMA-262 whitespace, as ARE bracket content. */
#define ECMA_SPACE "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"

/* Rewrites the ECMA-262 escapes that PostgreSQL's ARE reads differently. */
static char *
TranslatePattern(const char *src)
{
	StringInfoData out;
	bool		in_class = false;
	const char *p = src;

	initStringInfo(&out);
	while (*p)
	{
		if (p[0] == '\\' && p[1] != '\0')
		{
			const char *rep = NULL;

			switch (p[1])
			{
				case 'd':
					rep = in_class ? "0-9" : "[0-9]";
					break;
				case 'D':
					rep = in_class ? NULL : "[^0-9]";
					break;
				case 'w':
					rep = in_class ? "a-zA-Z0-9_" : "[a-zA-Z0-9_]";
					break;
				case 'W':
					rep = in_class ? NULL : "[^a-zA-Z0-9_]";
					break;
				case 's':
					rep = in_class ? ECMA_SPACE : "[" ECMA_SPACE "]";
					break;
				case 'S':
					rep = in_class ? NULL : "[^" ECMA_SPACE "]";
					break;
				case 'b':
					rep = in_class ? NULL : "\\y";
					break;
				case 'B':
					rep = in_class ? NULL : "\\Y";
					break;
			}
			if (rep)
				appendStringInfoString(&out, rep);
			else
				appendBinaryStringInfo(&out, p, 2);
			p += 2;
			continue;
		}
		if (*p == '[' && !in_class)
		{
			in_class = true;
			appendStringInfoChar(&out, *p++);
			if (*p == '^')
				appendStringInfoChar(&out, *p++);
			continue;
		}
		if (*p == ']' && in_class)
			in_class = false;
		appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/* ---------------------------------------------------------------------
 * Simple patterns without the regex engine
 * ---------------------------------------------------------------------
 *
 * Most schema patterns are a sequence of literals and character classes
 * with quantifiers, optionally anchored: "^SKU-[0-9]{5}$", "^c-[0-9]+$".
 * Those compile, besides the ARE, to a small position automaton run as a
 * bit-parallel NFA (one bit per position, up to 63), which takes linear
 * time, allocates nothing and needs no wide-character conversion.  It
 * accepts exactly what the ARE of TranslatePattern() accepts; anything the
 * parser is unsure of (groups, alternation, escapes other than \d \w \D \W
 * and escaped punctuation, POSIX classes, non-ASCII) keeps the ARE.
 *
 * Classes are over ASCII; a non-ASCII character (one UTF-8 sequence, or one
 * byte in a single-byte encoding) matches only "." and negated classes.
 * Other multibyte encodings always use the ARE.
 */
#define FASTRE_MAX		63		/* positions; bit 63 is "accepted" */

typedef struct FastRe
{
	int			npos;
	bool		anch_start;
	bool		anch_end;
	bool		utf8;
	uint64		start;			/* closure of position 0 */
	uint64		skip;			/* positions that may match nothing (?, *) */
	uint64		loop;			/* positions that repeat (*) */
	uint64		nonascii;		/* positions matching a non-ASCII char */
	uint64		cmask[128];		/* positions matching each ASCII char */
} FastRe;

/* A character set over ASCII, plus "every non-ASCII character". */
typedef struct FastSet
{
	bool		ascii[128];
	bool		nonascii;
} FastSet;

/* Punctuation that is literal in an ARE outside brackets. */
static inline bool
FastPlainChar(unsigned char c)
{
	if (c < 0x20 || c > 0x7e)
		return false;
	if (isalnum(c))
		return true;
	return strchr(" !\"#%&',-/:;<=>@_`~", c) != NULL;
}

/* Escaped punctuation, literal in ARE and ECMA alike. */
static inline bool
FastEscapedPunct(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && !isalnum(c);
}

static void
FastSetRange(FastSet *set, int lo, int hi)
{
	int			c;

	for (c = lo; c <= hi; c++)
		set->ascii[c] = true;
}

/* Adds \d or \w; false for other letters. */
static bool
FastSetShorthand(FastSet *set, char c)
{
	if (c == 'd')
		FastSetRange(set, '0', '9');
	else if (c == 'w')
	{
		FastSetRange(set, '0', '9');
		FastSetRange(set, 'a', 'z');
		FastSetRange(set, 'A', 'Z');
		set->ascii['_'] = true;
	}
	else
		return false;
	return true;
}

static void
FastSetNegate(FastSet *set)
{
	int			c;

	for (c = 0; c < 128; c++)
		set->ascii[c] = !set->ascii[c];
	set->nonascii = !set->nonascii;
}

/* Parses a bracket expression after its "["; returns the end, or NULL. */
static const char *
FastParseClass(const char *p, FastSet *set)
{
	bool		negate = false;
	bool		first = true;

	memset(set, 0, sizeof(FastSet));
	if (*p == '^')
	{
		negate = true;
		p++;
	}
	for (;;)
	{
		unsigned char c = (unsigned char) *p;
		int			lo;

		if (c == ']' && !first)
		{
			p++;
			break;
		}
		first = false;
		if (c == '\0' || c == '[' || c == ']' || c < 0x20 || c > 0x7e)
			return NULL;
		if (c == '\\')
		{
			unsigned char e = (unsigned char) p[1];

			if (e == 'd' || e == 'w')
			{
				FastSetShorthand(set, e);
				p += 2;
				/* "[\d-x]": a range from a class; leave it to the ARE */
				if (p[0] == '-' && p[1] != ']')
					return NULL;
				continue;
			}
			if (!FastEscapedPunct(e))
				return NULL;
			lo = e;
			p += 2;
		}
		else
		{
			lo = c;
			p++;
		}
		if (p[0] == '-' && p[1] != ']')
		{
			unsigned char h = (unsigned char) p[1];
			int			hi;

			if (h == '\\')
			{
				if (!FastEscapedPunct((unsigned char) p[2]))
					return NULL;
				hi = (unsigned char) p[2];
				p += 3;
			}
			else
			{
				if (h == '\0' || h == '[' || h < 0x20 || h > 0x7e)
					return NULL;
				hi = h;
				p += 2;
			}
			if (hi < lo)
				return NULL;
			FastSetRange(set, lo, hi);
			/* "[a-c-e]" */
			if (p[0] == '-' && p[1] != ']')
				return NULL;
		}
		else
			set->ascii[lo] = true;
	}
	if (negate)
		FastSetNegate(set);
	return p;
}

/* Reads a decimal bound number (at most 255, like the ARE's DUPMAX). */
static const char *
FastParseCount(const char *p, int *out)
{
	int			v = 0;

	if (!isdigit((unsigned char) *p))
		return NULL;
	while (isdigit((unsigned char) *p))
	{
		v = v * 10 + (*p - '0');
		if (v > 255)
			return NULL;
		p++;
	}
	*out = v;
	return p;
}

/* Adds one position matching "set"; false when there are too many. */
static bool
FastAddPos(FastRe *f, const FastSet *set, bool skip, bool loop)
{
	uint64		bit;
	int			c;

	if (f->npos >= FASTRE_MAX)
		return false;
	bit = UINT64CONST(1) << f->npos;
	for (c = 0; c < 128; c++)
		if (set->ascii[c])
			f->cmask[c] |= bit;
	if (set->nonascii)
		f->nonascii |= bit;
	if (skip)
		f->skip |= bit;
	if (loop)
		f->loop |= bit;
	f->npos++;
	return true;
}

/* The closure of a position set over positions that may match nothing. */
static inline uint64
FastClosure(const FastRe *f, uint64 s)
{
	uint64		prev;

	do
	{
		prev = s;
		s |= (s & f->skip) << 1;
	} while (s != prev);
	return s;
}

/* Compiles an ECMA-262 pattern to a FastRe, or returns NULL. */
static FastRe *
FastCompile(const char *src)
{
	FastRe	   *f;
	const char *p = src;
	int			enc = GetDatabaseEncoding();

	if (enc != PG_UTF8 && pg_database_encoding_max_length() != 1)
		return NULL;
	f = palloc0(sizeof(FastRe));
	f->utf8 = (enc == PG_UTF8);
	if (*p == '^')
	{
		f->anch_start = true;
		p++;
	}
	while (*p)
	{
		FastSet		set;
		unsigned char c = (unsigned char) *p;
		int			lo = 1,
					hi = 1,
					k;

		if (c == '$' && p[1] == '\0')
		{
			f->anch_end = true;
			break;
		}
		memset(&set, 0, sizeof(set));
		if (c == '[')
		{
			p = FastParseClass(p + 1, &set);
			if (p == NULL)
				goto fail;
		}
		else if (c == '.')
		{
			FastSetRange(&set, 0, 127);
			set.nonascii = true;
			p++;
		}
		else if (c == '\\')
		{
			unsigned char e = (unsigned char) p[1];

			if (e == 'd' || e == 'w')
				FastSetShorthand(&set, e);
			else if (e == 'D' || e == 'W')
			{
				FastSetShorthand(&set, e == 'D' ? 'd' : 'w');
				FastSetNegate(&set);
			}
			else if (FastEscapedPunct(e))
				set.ascii[e] = true;
			else
				goto fail;
			p += 2;
		}
		else if (FastPlainChar(c))
		{
			set.ascii[c] = true;
			p++;
		}
		else
			goto fail;

		/* quantifier */
		if (*p == '*')
		{
			lo = 0;
			hi = -1;
			p++;
		}
		else if (*p == '+')
		{
			lo = 1;
			hi = -1;
			p++;
		}
		else if (*p == '?')
		{
			lo = 0;
			hi = 1;
			p++;
		}
		else if (*p == '{')
		{
			p = FastParseCount(p + 1, &lo);
			if (p == NULL)
				goto fail;
			if (*p == '}')
				hi = lo;
			else if (*p == ',' && p[1] == '}')
			{
				hi = -1;
				p++;
			}
			else if (*p == ',')
			{
				p = FastParseCount(p + 1, &hi);
				if (p == NULL || *p != '}' || hi < lo)
					goto fail;
			}
			else
				goto fail;
			p++;
		}
		/* a second quantifier, or a lazy one: leave it to the ARE */
		if (*p == '*' || *p == '+' || *p == '?' || *p == '{')
			goto fail;

		for (k = 0; k < lo; k++)
			if (!FastAddPos(f, &set, false, false))
				goto fail;
		if (hi < 0)
		{
			if (!FastAddPos(f, &set, true, true))
				goto fail;
		}
		else
		{
			for (k = lo; k < hi; k++)
				if (!FastAddPos(f, &set, true, false))
					goto fail;
		}
	}
	f->start = FastClosure(f, UINT64CONST(1));
	return f;

fail:
	pfree(f);
	return NULL;
}

/* Does a string contain a match of a FastRe? */
static bool
FastMatch(const FastRe *f, const char *s, int len)
{
	uint64		accept = UINT64CONST(1) << f->npos;
	uint64		cur = f->start;
	int			i = 0;

	if (!f->anch_end && (cur & accept))
		return true;
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		uint64		m;

		if (c < 0x80)
		{
			m = f->cmask[c];
			i++;
		}
		else
		{
			m = f->nonascii;
			i += f->utf8 ? pg_utf_mblen((const unsigned char *) s + i) : 1;
		}
		m &= cur;
		cur = FastClosure(f, ((m & ~f->loop) << 1) | (m & f->loop));
		if (!f->anch_start)
			cur |= f->start;
		else if (cur == 0)
			return false;
		if (!f->anch_end && (cur & accept))
			return true;
	}
	return (cur & accept) != 0;
}

/* Compiles an ECMA-262 pattern into the schema's context. */
static EbRegex *
CompileRegex(Compiler *c, IndexEntry *e, const char *kw, const char *src, int len)
{
	EbRegex    *r = palloc0(sizeof(EbRegex));
	char	   *are;
	pg_wchar   *w;
	int			wlen;
	int			rc;

	r->src = pnstrdup(src, len);
	are = TranslatePattern(r->src);
	w = palloc((strlen(are) + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(are, w, strlen(are));
	rc = pg_regcomp(&r->re, w, wlen, REG_ADVANCED | REG_NOSUB, C_COLLATION_OID);
	if (rc != REG_OKAY)
	{
		char		buf[256];

		pg_regerror(rc, &r->re, buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JSON Schema: invalid regular expression \"%s\"",
						r->src),
				 errdetail("at %s/%s: %s.", e->loc, kw, buf),
				 errhint("Patterns are ECMA-262 regular expressions, e.g. \"^[a-z]+$\".")));
	}
	c->schema->regexes = lappend(c->schema->regexes, r);
	r->fast = FastCompile(r->src);
	return r;
}

/* Reads "type": a type name or an array of them. */
static uint8
ParseTypes(IndexEntry *e, JsonbValue *v)
{
	static const struct
	{
		const char *name;
		uint8		bit;
	}			names[] = {
		{"null", T_NULL}, {"boolean", T_BOOLEAN}, {"object", T_OBJECT},
		{"array", T_ARRAY}, {"number", T_NUMBER}, {"string", T_STRING},
		{"integer", T_INTEGER}
	};
	const char *hint = "Valid types are \"null\", \"boolean\", \"object\", \"array\", \"number\", \"string\" and \"integer\".";
	uint8		mask = 0;
	JsonbValue	one;
	ContIter	it;
	bool		isarray = IsArray(v);

	if (isarray)
		IterInit(&it, v->val.binary.data);
	for (;;)
	{
		int			k;
		bool		ok = false;

		if (isarray)
		{
			if (!IterNext(&it, NULL, &one))
				break;
		}
		else
			one = *v;
		if (one.type != jbvString)
			BadSchema(e->loc, "type", hint,
					  "\"type\" must be a type name or an array of type names");
		for (k = 0; k < lengthof(names); k++)
		{
			if (strlen(names[k].name) == one.val.string.len &&
				memcmp(names[k].name, one.val.string.val, one.val.string.len) == 0)
			{
				mask |= names[k].bit;
				ok = true;
			}
		}
		if (!ok)
			BadSchema(e->loc, "type", hint, "unknown type \"%.*s\"",
					  one.val.string.len, one.val.string.val);
		if (!isarray)
			break;
	}
	return mask;
}

/* Reads an array of unique strings (required, dependentRequired). */
static int
ParseStringArray(IndexEntry *e, const char *kw, JsonbValue *v,
				 const char ***names, int **lens)
{
	ContIter	it;
	JsonbValue	el;
	int			n;
	int			i,
				j;

	if (!IsArray(v))
		BadSchema(e->loc, kw, "e.g. [\"id\", \"amount\"]",
				  "\"%s\" must be an array of strings", kw);
	n = JsonContainerSize(v->val.binary.data);
	*names = palloc0(sizeof(char *) * Max(n, 1));
	*lens = palloc0(sizeof(int) * Max(n, 1));
	IterInit(&it, v->val.binary.data);
	i = 0;
	while (IterNext(&it, NULL, &el))
	{
		if (el.type != jbvString)
			BadSchema(e->loc, kw, "e.g. [\"id\", \"amount\"]",
					  "\"%s\" must be an array of strings", kw);
		for (j = 0; j < i; j++)
			if ((*lens)[j] == el.val.string.len &&
				memcmp((*names)[j], el.val.string.val, el.val.string.len) == 0)
				BadSchema(e->loc, kw, NULL, "\"%s\" has the duplicate \"%.*s\"",
						  kw, el.val.string.len, el.val.string.val);
		(*names)[i] = el.val.string.val;
		(*lens)[i] = el.val.string.len;
		i++;
	}
	return n;
}

/* Compiles the keywords of one schema object into its node. */
static void
CompileKeywords(Compiler *c, SchemaNode *n, IndexEntry *e, JsonbContainer *jc)
{
	JsonbValue	v;
	int			draft = e->draft;
	bool		items_array = false;

	if (GetKey(jc, "$ref", &v))
	{
		n->ref = CompileRef(c, e, "$ref", &v, NULL);
		if (draft == DRAFT_7)
		{
			n->ref_only = true;
			return;
		}
	}
	if (draft == DRAFT_2020 && GetKey(jc, "$dynamicRef", &v))
	{
		Anchor	   *a = NULL;

		n->dynref = CompileRef(c, e, "$dynamicRef", &v, &a);
		if (a && a->dynamic)
			n->dynname = a->name;
	}

	if (GetKey(jc, "type", &v))
		n->types = ParseTypes(e, &v);
	if (GetKey(jc, "enum", &v))
	{
		ContIter	it;

		if (!IsArray(&v))
			BadSchema(e->loc, "enum", "e.g. [\"a\", \"b\", 1]",
					  "\"enum\" must be an array");
		n->nenum = JsonContainerSize(v.val.binary.data);
		n->enumvals = palloc0(sizeof(JsonbValue) * Max(n->nenum, 1));
		IterInit(&it, v.val.binary.data);
		while (IterNext(&it, NULL, &n->enumvals[it.i]))
			;
	}
	if (GetKey(jc, "const", &v))
	{
		n->has_const = true;
		n->constval = v;
	}

	n->multipleOf = GetNumber(e, jc, "multipleOf");
	if (n->multipleOf && NumCmp(n->multipleOf, c->schema->zero) <= 0)
		BadSchema(e->loc, "multipleOf", NULL, "\"multipleOf\" must be greater than 0");
	n->maximum = GetNumber(e, jc, "maximum");
	n->exclusiveMaximum = GetNumber(e, jc, "exclusiveMaximum");
	n->minimum = GetNumber(e, jc, "minimum");
	n->exclusiveMinimum = GetNumber(e, jc, "exclusiveMinimum");
	if (n->multipleOf)
		NumDecode(n->multipleOf, &n->f_multipleOf);
	if (n->maximum)
		NumDecode(n->maximum, &n->f_maximum);
	if (n->exclusiveMaximum)
		NumDecode(n->exclusiveMaximum, &n->f_exclusiveMaximum);
	if (n->minimum)
		NumDecode(n->minimum, &n->f_minimum);
	if (n->exclusiveMinimum)
		NumDecode(n->exclusiveMinimum, &n->f_exclusiveMinimum);

	n->maxLength = GetCount(e, jc, "maxLength");
	n->minLength = GetCount(e, jc, "minLength");
	if (GetKey(jc, "pattern", &v))
	{
		if (v.type != jbvString)
			BadSchema(e->loc, "pattern", NULL, "\"pattern\" must be a string");
		n->pattern = CompileRegex(c, e, "pattern", v.val.string.val,
								  v.val.string.len);
	}

	/* arrays */
	if (draft == DRAFT_2020)
	{
		if (GetKey(jc, "prefixItems", &v))
			n->prefixItems = CompileSubArray(c, e, &v, "prefixItems", true,
											 &n->nprefix);
		if (GetKey(jc, "items", &v))
		{
			n->items = CompileSub(c, e, &v, "items");
			n->items_kw = "items";
		}
	}
	else
	{
		if (GetKey(jc, "items", &v))
		{
			if (IsArray(&v))
			{
				n->prefixItems = CompileSubArray(c, e, &v, "items", true,
												 &n->nprefix);
				items_array = true;
			}
			else
			{
				n->items = CompileSub(c, e, &v, "items");
				n->items_kw = "items";
			}
		}
		if (items_array && GetKey(jc, "additionalItems", &v))
		{
			n->items = CompileSub(c, e, &v, "additionalItems");
			n->items_kw = "additionalItems";
		}
	}
	n->minContains = 1;
	n->maxContains = -1;
	if (GetKey(jc, "contains", &v))
	{
		n->contains = CompileSub(c, e, &v, "contains");
		if (draft == DRAFT_2020)
		{
			int64		m = GetCount(e, jc, "minContains");

			if (m >= 0)
				n->minContains = m;
			n->maxContains = GetCount(e, jc, "maxContains");
		}
	}
	n->maxItems = GetCount(e, jc, "maxItems");
	n->minItems = GetCount(e, jc, "minItems");
	if (GetKey(jc, "uniqueItems", &v))
	{
		if (v.type != jbvBool)
			BadSchema(e->loc, "uniqueItems", NULL, "\"uniqueItems\" must be a boolean");
		n->uniqueItems = v.val.boolean;
	}

	/* objects */
	if (GetKey(jc, "properties", &v))
	{
		ContIter	it;
		JsonbValue	key,
					el;

		if (!IsObject(&v))
			BadSchema(e->loc, "properties", "e.g. {\"id\": {\"type\": \"integer\"}}",
					  "\"properties\" must be an object of schemas");
		n->nprops = JsonContainerSize(v.val.binary.data);
		n->props = palloc0(sizeof(PropEntry) * Max(n->nprops, 1));
		IterInit(&it, v.val.binary.data);
		while (IterNext(&it, &key, &el))
		{
			PropEntry  *pe = &n->props[it.i - 1];

			pe->name = key.val.string.val;
			pe->len = key.val.string.len;
			pe->node = CompileSub(c, e, &el,
								  psprintf("properties/%s",
										   PointerToken(pe->name, pe->len)));
		}
		/* already in jsonb key order, but be sure */
		qsort(n->props, n->nprops, sizeof(PropEntry), PropEntryCmp);
	}
	if (GetKey(jc, "patternProperties", &v))
	{
		ContIter	it;
		JsonbValue	key,
					el;

		if (!IsObject(&v))
			BadSchema(e->loc, "patternProperties", "e.g. {\"^x-\": {\"type\": \"string\"}}",
					  "\"patternProperties\" must be an object of schemas");
		n->npatprops = JsonContainerSize(v.val.binary.data);
		n->patprops = palloc0(sizeof(PatProp) * Max(n->npatprops, 1));
		IterInit(&it, v.val.binary.data);
		while (IterNext(&it, &key, &el))
		{
			PatProp    *pp = &n->patprops[it.i - 1];

			pp->re = CompileRegex(c, e, "patternProperties",
								  key.val.string.val, key.val.string.len);
			pp->node = CompileSub(c, e, &el,
								  psprintf("patternProperties/%s",
										   PointerToken(key.val.string.val,
														key.val.string.len)));
		}
	}
	if (GetKey(jc, "additionalProperties", &v))
		n->additionalProperties = CompileSub(c, e, &v, "additionalProperties");
	if (GetKey(jc, "propertyNames", &v))
		n->propertyNames = CompileSub(c, e, &v, "propertyNames");
	n->maxProperties = GetCount(e, jc, "maxProperties");
	n->minProperties = GetCount(e, jc, "minProperties");
	if (GetKey(jc, "required", &v))
	{
		int			i;

		n->nrequired = ParseStringArray(e, "required", &v, &n->required,
										&n->requiredlens);
		n->reqsorted = palloc0(sizeof(PropEntry) * Max(n->nrequired, 1));
		for (i = 0; i < n->nrequired; i++)
		{
			n->reqsorted[i].name = n->required[i];
			n->reqsorted[i].len = n->requiredlens[i];
		}
		qsort(n->reqsorted, n->nrequired, sizeof(PropEntry), PropEntryCmp);
	}

	/* dependentRequired / dependentSchemas, or draft-07 "dependencies" */
	{
		const char *kws[3];
		int			k;

		if (draft == DRAFT_2020)
		{
			kws[0] = "dependentRequired";
			kws[1] = "dependentSchemas";
			kws[2] = NULL;
		}
		else
		{
			kws[0] = "dependencies";
			kws[1] = NULL;
		}
		for (k = 0; kws[k]; k++)
		{
			ContIter	it;
			JsonbValue	key,
						el;
			int			cnt;

			if (!GetKey(jc, kws[k], &v))
				continue;
			if (!IsObject(&v))
				BadSchema(e->loc, kws[k], NULL, "\"%s\" must be an object", kws[k]);
			cnt = JsonContainerSize(v.val.binary.data);
			/* Room for this keyword's entries in both arrays, on top of the
			 * previous keyword's (each entry may go to either). */
			{
				PropEntry  *grown;

				grown = palloc0(sizeof(PropEntry) * (n->ndepreq + cnt + 1));
				if (n->depreq)
					memcpy(grown, n->depreq, sizeof(PropEntry) * n->ndepreq);
				n->depreq = grown;
				grown = palloc0(sizeof(PropEntry) * (n->ndepschemas + cnt + 1));
				if (n->depschemas)
					memcpy(grown, n->depschemas, sizeof(PropEntry) * n->ndepschemas);
				n->depschemas = grown;
			}
			IterInit(&it, v.val.binary.data);
			while (IterNext(&it, &key, &el))
			{
				char	   *sub = psprintf("%s/%s", kws[k],
										   PointerToken(key.val.string.val,
														key.val.string.len));
				bool		isreq = (k == 0 && IsArray(&el));

				if (isreq)
				{
					PropEntry  *pe = &n->depreq[n->ndepreq++];

					pe->name = key.val.string.val;
					pe->len = key.val.string.len;
					pe->ndeps = ParseStringArray(e, sub, &el, &pe->deps,
												 &pe->deplens);
				}
				else
				{
					PropEntry  *pe = &n->depschemas[n->ndepschemas++];

					if (k == 0 && draft == DRAFT_2020)
						BadSchema(e->loc, sub, NULL,
								  "\"dependentRequired\" values must be arrays of strings");
					pe->name = key.val.string.val;
					pe->len = key.val.string.len;
					pe->node = CompileSub(c, e, &el, sub);
				}
			}
		}
	}

	/* applicators */
	if (GetKey(jc, "allOf", &v))
		n->allOf = CompileSubArray(c, e, &v, "allOf", false, &n->nallOf);
	if (GetKey(jc, "anyOf", &v))
		n->anyOf = CompileSubArray(c, e, &v, "anyOf", false, &n->nanyOf);
	if (GetKey(jc, "oneOf", &v))
		n->oneOf = CompileSubArray(c, e, &v, "oneOf", false, &n->noneOf);
	if (GetKey(jc, "not", &v))
		n->not = CompileSub(c, e, &v, "not");
	if (GetKey(jc, "if", &v))
	{
		n->if_ = CompileSub(c, e, &v, "if");
		if (GetKey(jc, "then", &v))
			n->then_ = CompileSub(c, e, &v, "then");
		if (GetKey(jc, "else", &v))
			n->else_ = CompileSub(c, e, &v, "else");
	}
	if (draft == DRAFT_2020)
	{
		if (GetKey(jc, "unevaluatedItems", &v))
			n->unevaluatedItems = CompileSub(c, e, &v, "unevaluatedItems");
		if (GetKey(jc, "unevaluatedProperties", &v))
			n->unevaluatedProperties = CompileSub(c, e, &v,
												  "unevaluatedProperties");
	}
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
	if (!IsObject(jv))
		BadSchema(loc, NULL, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
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
	CompileKeywords(c, n, e, jc);
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
		cb->func = FreeRegexes;
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
		JsonbRootValue(copy, &root);
		if (root.type != jbvBool && !IsObject(&root))
			BadSchema("#", NULL, "A schema is an object, e.g. {\"type\": \"string\"}, or true or false.",
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

/* ---------------------------------------------------------------------
 * Validator
 * ---------------------------------------------------------------------
 */

/* Will a failure be reported (and so is its message worth building)? */
static inline bool
Reporting(VState *st)
{
	return st->collect && st->quiet == 0 && (st->all || st->nerrors == 0);
}

/* May validation go on after a failure (to collect more)? */
static inline bool
CanContinue(VState *st)
{
	return st->all && st->collect && st->quiet == 0;
}

/* Formats the current instance path: $, $.a, $.items[2], $["a b"]. */
static char *
FormatPath(VState *st)
{
	StringInfoData out;
	int			i;

	initStringInfo(&out);
	appendStringInfoChar(&out, '$');
	for (i = 0; i < st->npath; i++)
	{
		PathSeg    *seg = &st->path[i];

		if (seg->key == NULL)
			appendStringInfo(&out, "[%d]", seg->index);
		else
		{
			bool		ident;
			int			j;

			/* identifier-like keys print as .key, others as ["key"] */
			ident = seg->keylen > 0 && !isdigit((unsigned char) seg->key[0]);
			for (j = 0; j < seg->keylen && ident; j++)
				if (!isalnum((unsigned char) seg->key[j]) && seg->key[j] != '_')
					ident = false;
			if (ident)
			{
				appendStringInfoChar(&out, '.');
				appendBinaryStringInfo(&out, seg->key, seg->keylen);
			}
			else
			{
				appendStringInfoChar(&out, '[');
				escape_json(&out, pnstrdup(seg->key, seg->keylen));
				appendStringInfoChar(&out, ']');
			}
		}
	}
	return out.data;
}

/* Records a failure. */
static void
Fail(VState *st, const char *keyword, const char *fmt,...)
pg_attribute_printf(3, 4);

/* Records a failure. */
static void
Fail(VState *st, const char *keyword, const char *fmt,...)
{
	EbSchemaError *err;
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
	err = palloc(sizeof(EbSchemaError));
	err->path = FormatPath(st);
	err->keyword = pstrdup(keyword);
	err->message = msg.data;
	st->errors = lappend(st->errors, err);
	st->nerrors++;
}

/* Reports a failure, building the message only if it will be kept. */
#define FAIL(st, ...) \
	do { if (Reporting(st)) Fail((st), __VA_ARGS__); } while (0)

/* Pushes a path segment (key, or index when key is NULL). */
static void
PushPath(VState *st, const char *key, int keylen, int index)
{
	if (st->npath >= st->pathcap)
	{
		PathSeg    *np = palloc(sizeof(PathSeg) * st->pathcap * 2);

		memcpy(np, st->path, sizeof(PathSeg) * st->npath);
		st->path = np;
		st->pathcap *= 2;
	}
	st->path[st->npath].key = key;
	st->path[st->npath].keylen = keylen;
	st->path[st->npath].index = index;
	st->npath++;
}

/* Validates a child instance (an item or a property value). */
static bool
ValidateChild(VState *st, SchemaNode *node, JsonbValue *v, const char *key,
			  int keylen, int index)
{
	bool		r;
	int			saved;
	int			saved_base;

	if (node->kind == NODE_TRUE)
		return true;
	saved_base = st->loc_base;
	PushPath(st, key, keylen, index);
	saved = st->apply_depth;
	st->apply_depth = 0;
	st->loc_base = st->loc_top;
	r = ValidateNode(st, node, v, NULL);
	st->loc_top = st->loc_base;
	st->loc_base = saved_base;
	st->apply_depth = saved;
	st->npath--;
	return r;
}

/*
 * Counts one unit of work against the cap of one validation (a schema
 * application, a comparison of two items, a key against a pattern), and
 * checks for cancellation now and then.
 */
static void
CountWork(VState *st)
{
	if ((++st->applications & 1023) == 0)
		CHECK_FOR_INTERRUPTS();
	if (st->applications > MAX_APPLICATIONS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("JSON Schema validation needs more than %d steps", MAX_APPLICATIONS),
				 errdetail("The schema's combinators, patterns or uniqueItems take too much work for this document."),
				 errhint("Simplify the schema, or validate smaller documents.")));
}

/* Frees an annotation set. */
static void
FreeAnnot(Annot *a)
{
	if (a)
	{
		pfree(a->marks);
		pfree(a);
	}
}

/* Makes an empty annotation set for an instance of n items/properties. */
static Annot *
NewAnnot(int n)
{
	Annot	   *a = palloc(sizeof(Annot));

	a->n = n;
	a->marks = palloc0(Max(n, 1));
	return a;
}

/* Adds the marks of src to dst. */
static void
MergeAnnot(Annot *dst, Annot *src)
{
	int			i;

	for (i = 0; i < dst->n; i++)
		dst->marks[i] |= src->marks[i];
}

/* Names the type of a value, for messages. */
static const char *
ValueTypeName(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvBool:
			return "boolean";
		case jbvNumeric:
			return NumIsIntegral(v->val.numeric) ? "integer" : "number";
		case jbvString:
			return "string";
		default:
			return IsObject(v) ? "object" : "array";
	}
}

/* Lists the type names of a "type" mask: "string or null". */
static char *
TypeMaskNames(uint8 mask)
{
	static const char *const names[] = {
		"null", "boolean", "object", "array", "number", "string", "integer"
	};
	StringInfoData out;
	int			k;

	initStringInfo(&out);
	for (k = 0; k < lengthof(names); k++)
	{
		if (mask & (1 << k))
		{
			if (out.len > 0)
				appendStringInfoString(&out, " or ");
			appendStringInfoString(&out, names[k]);
		}
	}
	return out.data;
}

/* Does a value match a "type" mask? */
static bool
TypeMatches(uint8 mask, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return (mask & T_NULL) != 0;
		case jbvBool:
			return (mask & T_BOOLEAN) != 0;
		case jbvString:
			return (mask & T_STRING) != 0;
		case jbvNumeric:
			if (mask & T_NUMBER)
				return true;
			return (mask & T_INTEGER) && NumIsIntegralFast(v->val.numeric);
		case jbvBinary:
			if (JsonContainerIsObject(v->val.binary.data))
				return (mask & T_OBJECT) != 0;
			return (mask & T_ARRAY) != 0;
		default:
			return false;
	}
}

/* Does a string contain a match of the ARE? */
static bool
AreMatch(EbRegex *r, const char *s, int len)
{
	pg_wchar	sbuf[256];
	pg_wchar   *w = sbuf;
	int			wlen;
	int			rc;

	if (len + 1 > lengthof(sbuf))
		w = palloc(sizeof(pg_wchar) * (len + 1));
	wlen = pg_mb2wchar_with_len(s, w, len);
	rc = pg_regexec(&r->re, w, wlen, 0, NULL, 0, NULL, 0);
	if (w != sbuf)
		pfree(w);
	if (rc == REG_OKAY)
		return true;
	if (rc == REG_CANCEL)
		CHECK_FOR_INTERRUPTS();
	if (rc != REG_NOMATCH)
	{
		char		buf[256];

		pg_regerror(rc, &r->re, buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression \"%s\" failed: %s", r->src, buf)));
	}
	return false;
}

/* Does a string contain a match of the regular expression? */
static bool
RegexMatch(EbRegex *r, const char *s, int len)
{
	if (r->fast)
	{
		bool		res = FastMatch(r->fast, s, len);

		Assert(res == AreMatch(r, s, len));
		return res;
	}
	return AreMatch(r, s, len);
}

/* Validates the number keywords. */
static bool
ValidateNumber(VState *st, SchemaNode *n, Numeric num)
{
	bool		ok = true;
	NumFast		f;

	NumDecode(num, &f);
	if (n->multipleOf)
	{
		if (!NumIsMultiple(num, &f, n->multipleOf, &n->f_multipleOf,
						   st->schema->zero))
		{
			ok = false;
			FAIL(st, "multipleOf", "%s is not a multiple of %s", NumStr(num),
				 NumStr(n->multipleOf));
			if (!CanContinue(st))
				return false;
		}
	}
	if (n->maximum &&
		NumCmpFast(num, &f, n->maximum, &n->f_maximum) > 0)
	{
		ok = false;
		FAIL(st, "maximum", "%s is greater than the maximum of %s",
			 NumStr(num), NumStr(n->maximum));
		if (!CanContinue(st))
			return false;
	}
	if (n->exclusiveMaximum &&
		NumCmpFast(num, &f, n->exclusiveMaximum, &n->f_exclusiveMaximum) >= 0)
	{
		ok = false;
		FAIL(st, "exclusiveMaximum",
			 "%s is not less than the exclusive maximum of %s",
			 NumStr(num), NumStr(n->exclusiveMaximum));
		if (!CanContinue(st))
			return false;
	}
	if (n->minimum &&
		NumCmpFast(num, &f, n->minimum, &n->f_minimum) < 0)
	{
		ok = false;
		FAIL(st, "minimum", "%s is less than the minimum of %s",
			 NumStr(num), NumStr(n->minimum));
		if (!CanContinue(st))
			return false;
	}
	if (n->exclusiveMinimum &&
		NumCmpFast(num, &f, n->exclusiveMinimum, &n->f_exclusiveMinimum) <= 0)
	{
		ok = false;
		FAIL(st, "exclusiveMinimum",
			 "%s is not greater than the exclusive minimum of %s",
			 NumStr(num), NumStr(n->exclusiveMinimum));
	}
	return ok;
}

/* Validates the string keywords. */
static bool
ValidateString(VState *st, SchemaNode *n, JsonbValue *v)
{
	bool		ok = true;

	if (n->maxLength >= 0 || n->minLength >= 0)
	{
		int64		bytes = v->val.string.len;
		int64		len;

		/*
		 * A string has at most as many characters as bytes, and at least
		 * bytes / (longest character); count only when that does not settle
		 * both limits.
		 */
		if ((n->maxLength < 0 || bytes <= n->maxLength) &&
			(n->minLength < 0 ||
			 n->minLength <= bytes / pg_database_encoding_max_length()))
			len = n->minLength >= 0 ? n->minLength : bytes;	/* passes both */
		else
			len = pg_mbstrlen_with_len(v->val.string.val, v->val.string.len);

		if (n->maxLength >= 0 && len > n->maxLength)
		{
			ok = false;
			FAIL(st, "maxLength", "string is longer than %lld characters",
				 (long long) n->maxLength);
			if (!CanContinue(st))
				return false;
		}
		if (n->minLength >= 0 && len < n->minLength)
		{
			ok = false;
			FAIL(st, "minLength", "string is shorter than %lld characters",
				 (long long) n->minLength);
			if (!CanContinue(st))
				return false;
		}
	}
	if (n->pattern &&
		!RegexMatch(n->pattern, v->val.string.val, v->val.string.len))
	{
		ok = false;
		FAIL(st, "pattern", "string does not match the pattern \"%s\"",
			 n->pattern->src);
	}
	return ok;
}

/* Validates the array keywords; marks evaluated items in "a". */
static bool
ValidateArray(VState *st, SchemaNode *n, JsonbValue *v, Annot *a)
{
	JsonbContainer *jc = v->val.binary.data;
	int			size = JsonContainerSize(jc);
	bool		ok = true;
	ContIter	it;
	JsonbValue	el;
	int64		matches = 0;

	if (n->maxItems >= 0 && size > n->maxItems)
	{
		ok = false;
		FAIL(st, "maxItems", "array has more than %lld items",
			 (long long) n->maxItems);
		if (!CanContinue(st))
			return false;
	}
	if (n->minItems >= 0 && size < n->minItems)
	{
		ok = false;
		FAIL(st, "minItems", "array has fewer than %lld items",
			 (long long) n->minItems);
		if (!CanContinue(st))
			return false;
	}
	if (n->nprefix > 0 || n->items || n->contains)
	{
		IterInit(&it, jc);
		while (IterNext(&it, NULL, &el))
		{
			int			i = it.i - 1;
			SchemaNode *sub = i < n->nprefix ? n->prefixItems[i] : n->items;
			const char *kw = i < n->nprefix ? (n->draft == DRAFT_7 ? "items" : "prefixItems") : n->items_kw;

			if (sub)
			{
				if (sub->kind == NODE_FALSE)
				{
					ok = false;
					FAIL(st, kw, "array item %d is not allowed by \"%s\"", i, kw);
					if (!CanContinue(st))
						return false;
				}
				else if (!ValidateChild(st, sub, &el, NULL, 0, i))
				{
					ok = false;
					if (!CanContinue(st))
						return false;
				}
				if (a)
					a->marks[i] = true;
			}
			if (n->contains)
			{
				bool		r;

				st->quiet++;
				r = ValidateChild(st, n->contains, &el, NULL, 0, i);
				st->quiet--;
				if (r)
				{
					matches++;
					if (a)
						a->marks[i] = true;
				}
			}
		}
	}
	if (n->contains)
	{
		if (matches < n->minContains)
		{
			ok = false;
			if (n->minContains == 1)
				FAIL(st, "contains", "array has no item matching \"contains\"");
			else
				FAIL(st, "minContains",
					 "array has fewer than %lld items matching \"contains\"",
					 (long long) n->minContains);
			if (!CanContinue(st))
				return false;
		}
		if (n->maxContains >= 0 && matches > n->maxContains)
		{
			ok = false;
			FAIL(st, "maxContains",
				 "array has more than %lld items matching \"contains\"",
				 (long long) n->maxContains);
			if (!CanContinue(st))
				return false;
		}
	}
	if (n->uniqueItems && size > 1)
	{
		ContIter	outer;
		JsonbValue	x;

		IterInit(&outer, jc);
		while (IterNext(&outer, NULL, &x))
		{
			ContIter	inner = outer;
			JsonbValue	y;
			bool		dup = false;

			CHECK_FOR_INTERRUPTS();
			while (IterNext(&inner, NULL, &y))
			{
				CountWork(st);
				if (JsonEqual(&x, &y))
				{
					ok = false;
					dup = true;
					FAIL(st, "uniqueItems", "array items %d and %d are equal",
						 outer.i - 1, inner.i - 1);
					break;
				}
			}
			if (dup)
				break;
		}
		if (!ok && !CanContinue(st))
			return false;
	}
	return ok;
}

/* Is a key present in an object container? */
static inline bool
HasKey(JsonbContainer *jc, const char *key, int len)
{
	JsonbValue	tmp;

	return getKeyJsonValueFromContainer(jc, key, len, &tmp) != NULL;
}

/*
 * Are all the names (sorted like jsonb keys) keys of the object?  One merge
 * pass over the object's sorted keys.
 */
static bool
HasAllKeys(JsonbContainer *jc, const PropEntry *names, int nnames)
{
	int			n = JsonContainerSize(jc);
	const char *base = (const char *) &jc->children[n * 2];
	uint32		off = 0;
	int			i = 0,
				j;

	for (j = 0; j < nnames; j++)
	{
		for (;;)
		{
			JEntry		entry;
			int			klen,
						c;

			if (i >= n)
				return false;
			entry = jc->children[i];
			klen = JBE_HAS_OFF(entry) ? JBE_OFFLENFLD(entry) - off :
				JBE_OFFLENFLD(entry);
			c = KeyCmp(base + off, klen, names[j].name, names[j].len);
			if (c == 0)
				break;
			if (c > 0)
				return false;
			JBE_ADVANCE_OFFSET(off, entry);
			i++;
		}
	}
	return true;
}

/* Validates the object keywords; marks evaluated properties in "a". */
static bool
ValidateObject(VState *st, SchemaNode *n, JsonbValue *v, Annot *a)
{
	JsonbContainer *jc = v->val.binary.data;
	int			size = JsonContainerSize(jc);
	bool		ok = true;
	int			i,
				j;

	if (n->maxProperties >= 0 && size > n->maxProperties)
	{
		ok = false;
		FAIL(st, "maxProperties", "object has more than %lld properties",
			 (long long) n->maxProperties);
		if (!CanContinue(st))
			return false;
	}
	if (n->minProperties >= 0 && size < n->minProperties)
	{
		ok = false;
		FAIL(st, "minProperties", "object has fewer than %lld properties",
			 (long long) n->minProperties);
		if (!CanContinue(st))
			return false;
	}
	/* the common case, all present, in one pass; else report in order */
	if (n->nrequired > 0 && !HasAllKeys(jc, n->reqsorted, n->nrequired))
	{
		for (i = 0; i < n->nrequired; i++)
		{
			if (!HasKey(jc, n->required[i], n->requiredlens[i]))
			{
				ok = false;
				FAIL(st, "required", "required property \"%.*s\" is missing",
					 n->requiredlens[i], n->required[i]);
				if (!CanContinue(st))
					return false;
			}
		}
	}
	for (i = 0; i < n->ndepreq; i++)
	{
		PropEntry  *pe = &n->depreq[i];

		if (!HasKey(jc, pe->name, pe->len))
			continue;
		for (j = 0; j < pe->ndeps; j++)
		{
			if (!HasKey(jc, pe->deps[j], pe->deplens[j]))
			{
				ok = false;
				FAIL(st, n->draft == DRAFT_7 ? "dependencies" : "dependentRequired",
					 "property \"%.*s\" is required when \"%.*s\" is present",
					 pe->deplens[j], pe->deps[j], pe->len, pe->name);
				if (!CanContinue(st))
					return false;
			}
		}
	}
	for (i = 0; i < n->ndepschemas; i++)
	{
		PropEntry  *pe = &n->depschemas[i];

		if (!HasKey(jc, pe->name, pe->len))
			continue;
		if (!ValidateNode(st, pe->node, v, a))
		{
			ok = false;
			if (!CanContinue(st))
				return false;
		}
	}
	if (n->nprops > 0 || n->npatprops > 0 || n->additionalProperties ||
		n->propertyNames)
	{
		ContIter	it;
		JsonbValue	key,
					val;
		int			pi = 0;

		IterInit(&it, jc);
		while (IterNext(&it, &key, &val))
		{
			int			idx = it.i - 1;
			bool		matched = false;

			if (n->propertyNames)
			{
				bool		r;

				st->quiet++;
				r = ValidateNode(st, n->propertyNames, &key, NULL);
				st->quiet--;
				if (!r)
				{
					ok = false;
					FAIL(st, "propertyNames", "property name \"%.*s\" is not valid",
						 key.val.string.len, key.val.string.val);
					if (!CanContinue(st))
						return false;
				}
			}
			if (n->nprops > 0)
			{
				PropEntry  *pe = NULL;

				/* keys and n->props are sorted alike: merge */
				while (pi < n->nprops)
				{
					int			c = KeyCmp(n->props[pi].name, n->props[pi].len,
										   key.val.string.val,
										   key.val.string.len);

					if (c > 0)
						break;
					if (c == 0)
					{
						pe = &n->props[pi];
						break;
					}
					pi++;
				}

				if (pe)
				{
					matched = true;
					if (pe->node->kind == NODE_FALSE)
					{
						ok = false;
						FAIL(st, "properties", "property \"%.*s\" is not allowed",
							 key.val.string.len, key.val.string.val);
						if (!CanContinue(st))
							return false;
					}
					else if (!ValidateChild(st, pe->node, &val, key.val.string.val,
											key.val.string.len, 0))
					{
						ok = false;
						if (!CanContinue(st))
							return false;
					}
				}
			}
			for (j = 0; j < n->npatprops; j++)
			{
				PatProp    *pp = &n->patprops[j];

				CountWork(st);
				if (!RegexMatch(pp->re, key.val.string.val, key.val.string.len))
					continue;
				matched = true;
				if (!ValidateChild(st, pp->node, &val, key.val.string.val,
								   key.val.string.len, 0))
				{
					ok = false;
					if (!CanContinue(st))
						return false;
				}
			}
			if (!matched && n->additionalProperties)
			{
				matched = true;
				if (n->additionalProperties->kind == NODE_FALSE)
				{
					ok = false;
					FAIL(st, "additionalProperties",
						 "additional property \"%.*s\" is not allowed",
						 key.val.string.len, key.val.string.val);
					if (!CanContinue(st))
						return false;
				}
				else if (!ValidateChild(st, n->additionalProperties, &val,
										key.val.string.val,
										key.val.string.len, 0))
				{
					ok = false;
					if (!CanContinue(st))
						return false;
				}
			}
			if (matched && a)
				a->marks[idx] = true;
		}
	}
	return ok;
}

/* Finds the outermost dynamic anchor "name" in the dynamic scope. */
static SchemaNode *
DynamicTarget(VState *st, const char *name)
{
	int			i;

	for (i = 0; i < st->ndyn; i++)
	{
		ListCell   *lc;

		foreach(lc, st->dynscope[i]->dynanchors)
		{
			Anchor	   *an = lfirst(lc);

			if (strcmp(an->name, name) == 0)
				return an->node;
		}
	}
	return NULL;
}

/* Validates the unevaluatedItems/unevaluatedProperties keywords. */
static bool
ValidateUnevaluated(VState *st, SchemaNode *n, JsonbValue *v, Annot *a)
{
	bool		ok = true;
	bool		isobj = IsObject(v);
	SchemaNode *sub = isobj ? n->unevaluatedProperties : n->unevaluatedItems;
	const char *kw = isobj ? "unevaluatedProperties" : "unevaluatedItems";
	ContIter	it;
	JsonbValue	key,
				val;

	IterInit(&it, v->val.binary.data);
	while (IterNext(&it, isobj ? &key : NULL, &val))
	{
		int			i = it.i - 1;
		bool		r;

		if (a->marks[i])
			continue;
		if (sub->kind == NODE_FALSE)
		{
			r = false;
			if (isobj)
				FAIL(st, kw, "unevaluated property \"%.*s\" is not allowed",
					 key.val.string.len, key.val.string.val);
			else
				FAIL(st, kw, "unevaluated array item %d is not allowed", i);
		}
		else if (isobj)
			r = ValidateChild(st, sub, &val, key.val.string.val,
							  key.val.string.len, 0);
		else
			r = ValidateChild(st, sub, &val, NULL, 0, i);
		if (!r)
		{
			ok = false;
			if (!CanContinue(st))
				return false;
		}
		a->marks[i] = true;
	}
	return ok;
}

/*
 * Validates a value against a schema node.  "ann", when not NULL, collects
 * the items or properties this node evaluated (for an enclosing
 * unevaluatedItems/unevaluatedProperties); it is meaningful only if the
 * node is valid.
 */
static bool
ValidateNode(VState *st, SchemaNode *n, JsonbValue *v, Annot *ann)
{
	bool		ok = true;
	bool		pushed = false;
	Annot	   *a = ann;
	Annot	   *local = NULL;
	int			i;

	if (n->kind == NODE_TRUE)
		return true;
	if (n->kind == NODE_FALSE)
	{
		FAIL(st, "false", "no value is allowed here (the schema is false)");
		return false;
	}

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	CountWork(st);
	for (i = st->loc_base; i < st->loc_top; i++)
		if (st->loc[i] == n)
		{
			FAIL(st, "$ref", "schema recursion without progress (the schema refers back to itself at the same place)");
			return false;
		}
	if (++st->apply_depth > MAX_APPLY_DEPTH)
	{
		st->apply_depth--;
		FAIL(st, "$ref", "schema recursion too deep (more than %d nested schemas at one location)",
			 MAX_APPLY_DEPTH);
		return false;
	}
	if (st->loc_top >= st->loc_cap)
	{
		SchemaNode **nl = palloc(sizeof(SchemaNode *) * st->loc_cap * 2);

		memcpy(nl, st->loc, sizeof(SchemaNode *) * st->loc_top);
		st->loc = nl;
		st->loc_cap *= 2;
	}
	st->loc[st->loc_top++] = n;
	if (st->ndyn == 0 || st->dynscope[st->ndyn - 1] != n->res)
	{
		if (st->ndyn >= st->dyncap)
		{
			Resource  **nd = palloc(sizeof(Resource *) * st->dyncap * 2);

			memcpy(nd, st->dynscope, sizeof(Resource *) * st->ndyn);
			st->dynscope = nd;
			st->dyncap *= 2;
		}
		st->dynscope[st->ndyn++] = n->res;
		pushed = true;
	}

	if ((n->unevaluatedProperties && IsObject(v)) ||
		(n->unevaluatedItems && IsArray(v)))
	{
		local = NewAnnot(JsonContainerSize(v->val.binary.data));
		a = local;
	}

#define NODE_FAILED() \
	do { ok = false; if (!CanContinue(st)) goto done; } while (0)

	if (n->ref)
	{
		if (!ValidateNode(st, n->ref, v, a))
			NODE_FAILED();
		if (n->ref_only)
			goto done;
	}
	if (n->dynref)
	{
		SchemaNode *target = NULL;

		if (n->dynname)
			target = DynamicTarget(st, n->dynname);
		if (target == NULL)
			target = n->dynref;
		if (!ValidateNode(st, target, v, a))
			NODE_FAILED();
	}

	if (n->types && !TypeMatches(n->types, v))
	{
		FAIL(st, "type", "expected %s, got %s", TypeMaskNames(n->types),
			 ValueTypeName(v));
		NODE_FAILED();
	}
	if (n->enumvals)
	{
		bool		found = false;

		for (i = 0; i < n->nenum && !found; i++)
			found = JsonEqual(&n->enumvals[i], v);
		if (!found)
		{
			FAIL(st, "enum", "value is not one of the values in \"enum\"");
			NODE_FAILED();
		}
	}
	if (n->has_const && !JsonEqual(&n->constval, v))
	{
		FAIL(st, "const", "value does not equal \"const\"");
		NODE_FAILED();
	}

	switch (v->type)
	{
		case jbvNumeric:
			if ((n->multipleOf || n->maximum || n->minimum ||
				 n->exclusiveMaximum || n->exclusiveMinimum) &&
				!ValidateNumber(st, n, v->val.numeric))
				NODE_FAILED();
			break;
		case jbvString:
			if ((n->maxLength >= 0 || n->minLength >= 0 || n->pattern) &&
				!ValidateString(st, n, v))
				NODE_FAILED();
			break;
		case jbvBinary:
			if (JsonContainerIsArray(v->val.binary.data))
			{
				if (!ValidateArray(st, n, v, a))
					NODE_FAILED();
			}
			else if (!ValidateObject(st, n, v, a))
				NODE_FAILED();
			break;
		default:
			break;
	}

	for (i = 0; i < n->nallOf; i++)
	{
		if (!ValidateNode(st, n->allOf[i], v, a))
			NODE_FAILED();
	}
	if (n->nanyOf > 0)
	{
		bool		any = false;

		st->quiet++;
		for (i = 0; i < n->nanyOf; i++)
		{
			Annot	   *t = a ? NewAnnot(a->n) : NULL;

			if (ValidateNode(st, n->anyOf[i], v, t))
			{
				any = true;
				if (!a)
					break;
				MergeAnnot(a, t);
			}
			FreeAnnot(t);
		}
		st->quiet--;
		if (!any)
		{
			FAIL(st, "anyOf", "value does not match any schema in \"anyOf\"");
			NODE_FAILED();
		}
	}
	if (n->noneOf > 0)
	{
		int			count = 0;
		Annot	   *kept = NULL;

		st->quiet++;
		for (i = 0; i < n->noneOf; i++)
		{
			Annot	   *t = a ? NewAnnot(a->n) : NULL;

			if (ValidateNode(st, n->oneOf[i], v, t))
			{
				count++;
				if (kept)
					FreeAnnot(kept);
				kept = t;
				if (count > 1)
					break;
			}
			else
				FreeAnnot(t);
		}
		st->quiet--;
		if (count == 1 && a)
			MergeAnnot(a, kept);
		FreeAnnot(kept);
		if (count != 1)
		{
			if (count == 0)
				FAIL(st, "oneOf", "value does not match any schema in \"oneOf\"");
			else
				FAIL(st, "oneOf", "value matches more than one schema in \"oneOf\"");
			NODE_FAILED();
		}
	}
	if (n->not)
	{
		bool		r;

		st->quiet++;
		r = ValidateNode(st, n->not, v, NULL);
		st->quiet--;
		if (r)
		{
			FAIL(st, "not", "value must not match the schema in \"not\"");
			NODE_FAILED();
		}
	}
	if (n->if_)
	{
		Annot	   *t = a ? NewAnnot(a->n) : NULL;
		bool		r;

		st->quiet++;
		r = ValidateNode(st, n->if_, v, t);
		st->quiet--;
		if (r && a)
			MergeAnnot(a, t);
		FreeAnnot(t);
		if (r)
		{
			if (n->then_ && !ValidateNode(st, n->then_, v, a))
				NODE_FAILED();
		}
		else if (n->else_ && !ValidateNode(st, n->else_, v, a))
			NODE_FAILED();
	}

	if (local)
	{
		if (!ValidateUnevaluated(st, n, v, local))
			NODE_FAILED();
		if (ann && ok)
			MergeAnnot(ann, local);
	}

done:
	FreeAnnot(local);
	if (pushed)
		st->ndyn--;
	st->apply_depth--;
	st->loc_top--;
	return ok;
#undef NODE_FAILED
}

/*
 * Validates a document.  See jsonschema.h.
 */
bool
EbSchemaValidate(EbSchema *schema, Jsonb *doc, bool all, List **errors)
{
	VState		st;
	JsonbValue	root;
	bool		ok;

	st.schema = schema;
	st.all = all;
	st.collect = (errors != NULL);
	st.errors = NIL;
	st.nerrors = 0;
	st.quiet = 0;
	st.apply_depth = 0;
	st.applications = 0;
	st.loc = st.loc_inline;
	st.loc_base = 0;
	st.loc_top = 0;
	st.loc_cap = INLINE_STACK;
	st.path = st.path_inline;
	st.npath = 0;
	st.pathcap = INLINE_STACK;
	st.dynscope = st.dyn_inline;
	st.ndyn = 0;
	st.dyncap = INLINE_STACK;

	JsonbRootValue(doc, &root);
	ok = ValidateNode(&st, schema->root, &root, NULL);
	if (errors)
		*errors = list_concat(*errors, st.errors);
	return ok;
}
