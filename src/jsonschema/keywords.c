/*-------------------------------------------------------------------------
 *
 * keywords.c
 *	  The keywords of one JSON Schema object, read and checked into its
 *	  compiled SchemaNode: types, enum and const, number, string, array and
 *	  object keywords, dependencies and applicators.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonschema_int.h"

/* qsort comparator for PropEntry. */
static int
PropEntryCmp(const void *a, const void *b)
{
	const PropEntry *pa = a;
	const PropEntry *pb = b;

	return JsKeyCmp(pa->name, pa->len, pb->name, pb->len);
}

/* Reads a non-negative integer keyword (2.0 is accepted); -1 if absent. */
static int64
GetCount(IndexEntry *e, JsonbContainer *jc, const char *kw)
{
	JsonbValue	v;
	Numeric		big;

	if (!JsGetKey(jc, kw, &v))
		return -1;
	if (v.type != jbvNumeric || !JsNumIsIntegral(v.val.numeric) ||
		JsNumCmp(v.val.numeric, int64_to_numeric(0)) < 0)
		JsBadSchema(e->loc, kw, NULL, "\"%s\" must be a non-negative integer", kw);
	big = int64_to_numeric(PG_INT64_MAX / 2);
	if (JsNumCmp(v.val.numeric, big) > 0)
		return PG_INT64_MAX / 2;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v.val.numeric)));
}

/* Reads a number keyword; NULL if absent. */
static Numeric
GetNumber(IndexEntry *e, JsonbContainer *jc, const char *kw)
{
	JsonbValue	v;

	if (!JsGetKey(jc, kw, &v))
		return NULL;
	if (v.type != jbvNumeric)
		JsBadSchema(e->loc, kw, NULL, "\"%s\" must be a number", kw);
	return v.val.numeric;
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
	bool		isarray = JsIsArray(v);

	if (isarray)
		JsIterInit(&it, v->val.binary.data);
	for (;;)
	{
		int			k;
		bool		ok = false;

		if (isarray)
		{
			if (!JsIterNext(&it, NULL, &one))
				break;
		}
		else
			one = *v;
		if (one.type != jbvString)
			JsBadSchema(e->loc, "type", hint,
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
			JsBadSchema(e->loc, "type", hint, "unknown type \"%.*s\"",
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

	if (!JsIsArray(v))
		JsBadSchema(e->loc, kw, "e.g. [\"id\", \"amount\"]",
					"\"%s\" must be an array of strings", kw);
	n = JsonContainerSize(v->val.binary.data);
	*names = palloc0(sizeof(char *) * Max(n, 1));
	*lens = palloc0(sizeof(int) * Max(n, 1));
	JsIterInit(&it, v->val.binary.data);
	i = 0;
	while (JsIterNext(&it, NULL, &el))
	{
		if (el.type != jbvString)
			JsBadSchema(e->loc, kw, "e.g. [\"id\", \"amount\"]",
						"\"%s\" must be an array of strings", kw);
		for (j = 0; j < i; j++)
			if ((*lens)[j] == el.val.string.len &&
				memcmp((*names)[j], el.val.string.val, el.val.string.len) == 0)
				JsBadSchema(e->loc, kw, NULL, "\"%s\" has the duplicate \"%.*s\"",
							kw, el.val.string.len, el.val.string.val);
		(*names)[i] = el.val.string.val;
		(*lens)[i] = el.val.string.len;
		i++;
	}
	return n;
}

/* Compiles the keywords of one schema object into its node. */
void
JsCompileKeywords(Compiler *c, SchemaNode *n, IndexEntry *e, JsonbContainer *jc)
{
	JsonbValue	v;
	int			draft = e->draft;
	bool		items_array = false;

	if (JsGetKey(jc, "$ref", &v))
	{
		n->ref = JsCompileRef(c, e, "$ref", &v, NULL);
		if (draft == DRAFT_7)
		{
			n->ref_only = true;
			return;
		}
	}
	if (draft == DRAFT_2020 && JsGetKey(jc, "$dynamicRef", &v))
	{
		Anchor	   *a = NULL;

		n->dynref = JsCompileRef(c, e, "$dynamicRef", &v, &a);
		if (a && a->dynamic)
			n->dynname = a->name;
	}

	if (JsGetKey(jc, "type", &v))
		n->types = ParseTypes(e, &v);
	if (JsGetKey(jc, "enum", &v))
	{
		ContIter	it;

		if (!JsIsArray(&v))
			JsBadSchema(e->loc, "enum", "e.g. [\"a\", \"b\", 1]",
						"\"enum\" must be an array");
		n->nenum = JsonContainerSize(v.val.binary.data);
		n->enumvals = palloc0(sizeof(JsonbValue) * Max(n->nenum, 1));
		JsIterInit(&it, v.val.binary.data);
		while (JsIterNext(&it, NULL, &n->enumvals[it.i]))
			;
	}
	if (JsGetKey(jc, "const", &v))
	{
		n->has_const = true;
		n->constval = v;
	}

	n->multipleOf = GetNumber(e, jc, "multipleOf");
	if (n->multipleOf && JsNumCmp(n->multipleOf, c->schema->zero) <= 0)
		JsBadSchema(e->loc, "multipleOf", NULL, "\"multipleOf\" must be greater than 0");
	n->maximum = GetNumber(e, jc, "maximum");
	n->exclusiveMaximum = GetNumber(e, jc, "exclusiveMaximum");
	n->minimum = GetNumber(e, jc, "minimum");
	n->exclusiveMinimum = GetNumber(e, jc, "exclusiveMinimum");
	if (n->multipleOf)
		JsNumDecode(n->multipleOf, &n->f_multipleOf);
	if (n->maximum)
		JsNumDecode(n->maximum, &n->f_maximum);
	if (n->exclusiveMaximum)
		JsNumDecode(n->exclusiveMaximum, &n->f_exclusiveMaximum);
	if (n->minimum)
		JsNumDecode(n->minimum, &n->f_minimum);
	if (n->exclusiveMinimum)
		JsNumDecode(n->exclusiveMinimum, &n->f_exclusiveMinimum);

	n->maxLength = GetCount(e, jc, "maxLength");
	n->minLength = GetCount(e, jc, "minLength");
	if (JsGetKey(jc, "pattern", &v))
	{
		if (v.type != jbvString)
			JsBadSchema(e->loc, "pattern", NULL, "\"pattern\" must be a string");
		n->pattern = JsCompileRegex(c, e, "pattern", v.val.string.val,
									v.val.string.len);
	}

	/* arrays */
	if (draft == DRAFT_2020)
	{
		if (JsGetKey(jc, "prefixItems", &v))
			n->prefixItems = JsCompileSubArray(c, e, &v, "prefixItems", true,
											   &n->nprefix);
		if (JsGetKey(jc, "items", &v))
		{
			n->items = JsCompileSub(c, e, &v, "items");
			n->items_kw = "items";
		}
	}
	else
	{
		if (JsGetKey(jc, "items", &v))
		{
			if (JsIsArray(&v))
			{
				n->prefixItems = JsCompileSubArray(c, e, &v, "items", true,
												   &n->nprefix);
				items_array = true;
			}
			else
			{
				n->items = JsCompileSub(c, e, &v, "items");
				n->items_kw = "items";
			}
		}
		if (items_array && JsGetKey(jc, "additionalItems", &v))
		{
			n->items = JsCompileSub(c, e, &v, "additionalItems");
			n->items_kw = "additionalItems";
		}
	}
	n->minContains = 1;
	n->maxContains = -1;
	if (JsGetKey(jc, "contains", &v))
	{
		n->contains = JsCompileSub(c, e, &v, "contains");
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
	if (JsGetKey(jc, "uniqueItems", &v))
	{
		if (v.type != jbvBool)
			JsBadSchema(e->loc, "uniqueItems", NULL, "\"uniqueItems\" must be a boolean");
		n->uniqueItems = v.val.boolean;
	}

	/* objects */
	if (JsGetKey(jc, "properties", &v))
	{
		ContIter	it;
		JsonbValue	key,
					el;

		if (!JsIsObject(&v))
			JsBadSchema(e->loc, "properties", "e.g. {\"id\": {\"type\": \"integer\"}}",
						"\"properties\" must be an object of schemas");
		n->nprops = JsonContainerSize(v.val.binary.data);
		n->props = palloc0(sizeof(PropEntry) * Max(n->nprops, 1));
		JsIterInit(&it, v.val.binary.data);
		while (JsIterNext(&it, &key, &el))
		{
			PropEntry  *pe = &n->props[it.i - 1];

			pe->name = key.val.string.val;
			pe->len = key.val.string.len;
			pe->node = JsCompileSub(c, e, &el,
									psprintf("properties/%s",
											 JsPointerToken(pe->name, pe->len)));
		}
		/* already in jsonb key order, but be sure */
		qsort(n->props, n->nprops, sizeof(PropEntry), PropEntryCmp);
	}
	if (JsGetKey(jc, "patternProperties", &v))
	{
		ContIter	it;
		JsonbValue	key,
					el;

		if (!JsIsObject(&v))
			JsBadSchema(e->loc, "patternProperties", "e.g. {\"^x-\": {\"type\": \"string\"}}",
						"\"patternProperties\" must be an object of schemas");
		n->npatprops = JsonContainerSize(v.val.binary.data);
		n->patprops = palloc0(sizeof(PatProp) * Max(n->npatprops, 1));
		JsIterInit(&it, v.val.binary.data);
		while (JsIterNext(&it, &key, &el))
		{
			PatProp    *pp = &n->patprops[it.i - 1];

			pp->re = JsCompileRegex(c, e, "patternProperties",
									key.val.string.val, key.val.string.len);
			pp->node = JsCompileSub(c, e, &el,
									psprintf("patternProperties/%s",
											 JsPointerToken(key.val.string.val,
															key.val.string.len)));
		}
	}
	if (JsGetKey(jc, "additionalProperties", &v))
		n->additionalProperties = JsCompileSub(c, e, &v, "additionalProperties");
	if (JsGetKey(jc, "propertyNames", &v))
		n->propertyNames = JsCompileSub(c, e, &v, "propertyNames");
	n->maxProperties = GetCount(e, jc, "maxProperties");
	n->minProperties = GetCount(e, jc, "minProperties");
	if (JsGetKey(jc, "required", &v))
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

			if (!JsGetKey(jc, kws[k], &v))
				continue;
			if (!JsIsObject(&v))
				JsBadSchema(e->loc, kws[k], NULL, "\"%s\" must be an object", kws[k]);
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
			JsIterInit(&it, v.val.binary.data);
			while (JsIterNext(&it, &key, &el))
			{
				char	   *sub = psprintf("%s/%s", kws[k],
										   JsPointerToken(key.val.string.val,
														  key.val.string.len));
				bool		isreq = (k == 0 && JsIsArray(&el));

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
						JsBadSchema(e->loc, sub, NULL,
									"\"dependentRequired\" values must be arrays of strings");
					pe->name = key.val.string.val;
					pe->len = key.val.string.len;
					pe->node = JsCompileSub(c, e, &el, sub);
				}
			}
		}
	}

	/* applicators */
	if (JsGetKey(jc, "allOf", &v))
		n->allOf = JsCompileSubArray(c, e, &v, "allOf", false, &n->nallOf);
	if (JsGetKey(jc, "anyOf", &v))
		n->anyOf = JsCompileSubArray(c, e, &v, "anyOf", false, &n->nanyOf);
	if (JsGetKey(jc, "oneOf", &v))
		n->oneOf = JsCompileSubArray(c, e, &v, "oneOf", false, &n->noneOf);
	if (JsGetKey(jc, "not", &v))
		n->not = JsCompileSub(c, e, &v, "not");
	if (JsGetKey(jc, "if", &v))
	{
		n->if_ = JsCompileSub(c, e, &v, "if");
		if (JsGetKey(jc, "then", &v))
			n->then_ = JsCompileSub(c, e, &v, "then");
		if (JsGetKey(jc, "else", &v))
			n->else_ = JsCompileSub(c, e, &v, "else");
	}
	if (draft == DRAFT_2020)
	{
		if (JsGetKey(jc, "unevaluatedItems", &v))
			n->unevaluatedItems = JsCompileSub(c, e, &v, "unevaluatedItems");
		if (JsGetKey(jc, "unevaluatedProperties", &v))
			n->unevaluatedProperties = JsCompileSub(c, e, &v,
													"unevaluatedProperties");
	}
}
