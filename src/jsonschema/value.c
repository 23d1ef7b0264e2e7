/*-------------------------------------------------------------------------
 *
 * value.c
 *	  jsonb and numeric helpers of the JSON Schema validator: iteration over
 *	  jsonb containers in place, without allocation, exact comparison of
 *	  numbers (with fast paths for small ones) and JSON equality.
 *
 * Why numeric: JSON numbers are arbitrary-precision decimals; doubles give
 * wrong answers for multipleOf (0.0075 is a multiple of 0.0001) and for
 * large numbers, so all arithmetic uses numeric functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonschema_int.h"

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
void
JsIterInit(ContIter *it, JsonbContainer *jc)
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
bool
JsIterNext(ContIter *it, JsonbValue *key, JsonbValue *val)
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
void
JsRootValue(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		ContIter	it;

		JsIterInit(&it, &jb->root);
		JsIterNext(&it, NULL, out);
	}
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &jb->root;
		out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/* Looks up a key of an object container; false if absent. */
bool
JsGetKey(JsonbContainer *jc, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(jc, key, strlen(key), out) != NULL;
}

/* Is this number integral (1.0 counts)? */
bool
JsNumIsIntegral(Numeric n)
{
	return DatumGetInt32(DirectFunctionCall1(numeric_min_scale,
											 NumericGetDatum(n))) == 0;
}

/* Formats a Numeric, for messages. */
char *
JsNumStr(Numeric n)
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
void
JsNumDecode(Numeric num, NumFast *f)
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

/* Is "num" a multiple of "mult", by numeric_mod? */
static bool
NumIsMultipleSlow(Numeric num, Numeric mult, Numeric zero)
{
	return JsNumCmp(DatumGetNumeric(DirectFunctionCall2(numeric_mod,
														NumericGetDatum(num),
														NumericGetDatum(mult))),
					zero) == 0;
}

/* Is "num" a multiple of "mult" (> 0)? */
bool
JsNumIsMultiple(Numeric num, const NumFast *fn, Numeric mult, const NumFast *fm,
				Numeric zero)
{
	int64		x,
				y;

	if (fn->ok && fm->ok && fm->m > 0 && JsNumAlign(fn, fm, &x, &y))
	{
		Assert((x % y == 0) == NumIsMultipleSlow(num, mult, zero));
		return x % y == 0;
	}
	return NumIsMultipleSlow(num, mult, zero);
}

/* Is this number integral (1.0 counts)? */
bool
JsNumIsIntegralFast(Numeric n)
{
	const int16 *d;
	int			nd,
				weight,
				i;
	bool		neg;

	if (!NumDigits(n, &d, &nd, &weight, &neg))
		return JsNumIsIntegral(n);
	/* digits past the point: index > weight */
	for (i = Max(weight + 1, 0); i < nd; i++)
		if (d[i] != 0)
		{
			Assert(!JsNumIsIntegral(n));
			return false;
		}
	Assert(JsNumIsIntegral(n));
	return true;
}

/* Compares two JSON values for JSON equality (1 == 1.0, key order free). */
bool
JsEqual(JsonbValue *a, JsonbValue *b)
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

				JsNumDecode(a->val.numeric, &fa);
				JsNumDecode(b->val.numeric, &fb);
				return JsNumCmpFast(a->val.numeric, &fa,
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
				JsIterInit(&ia, ca);
				JsIterInit(&ib, cb);
				/* jsonb stores keys sorted, so pairs line up */
				while (JsIterNext(&ia, &ka, &va))
				{
					JsIterNext(&ib, &kb, &vb);
					if (ia.object && !JsEqual(&ka, &kb))
						return false;
					if (!JsEqual(&va, &vb))
						return false;
				}
				return true;
			}
		default:
			return false;
	}
}
