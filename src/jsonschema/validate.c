/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  JSON Schema validation: the walk of a document against a compiled
 *	  schema and the check of every keyword, in one file so that the
 *	  compiler inlines the hot path (the cold parts: failure.c, unevaluated.c).
 *
 * Recursion: a "$ref" cycle that consumes no input (e.g. {"$ref": "#"})
 * would loop forever; the number of nested schema applications at one
 * instance location is capped, and exceeding it is a validation failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonschema_int.h"

/* Nested schema applications allowed at one instance location. */
#define MAX_APPLY_DEPTH 200
/* Schema applications one validation may make: a cap against schemas whose
 * combinators nest into exponential work (e.g. anyOf of anyOf of ...). */
#define MAX_APPLICATIONS 10000000

static bool ValidateNode(VState *st, SchemaNode *node, JsonbValue *v, Annot *ann);

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
bool
JsValidateChild(VState *st, SchemaNode *node, JsonbValue *v, const char *key,
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
			return (mask & T_INTEGER) && JsNumIsIntegralFast(v->val.numeric);
		case jbvBinary:
			if (JsonContainerIsObject(v->val.binary.data))
				return (mask & T_OBJECT) != 0;
			return (mask & T_ARRAY) != 0;
		default:
			return false;
	}
}

/* Validates the number keywords. */
static bool
ValidateNumber(VState *st, SchemaNode *n, Numeric num)
{
	bool		ok = true;
	NumFast		f;

	JsNumDecode(num, &f);
	if (n->multipleOf)
	{
		if (!JsNumIsMultiple(num, &f, n->multipleOf, &n->f_multipleOf,
							 st->schema->zero))
		{
			ok = false;
			FAIL(st, "multipleOf", "%s is not a multiple of %s", JsNumStr(num),
				 JsNumStr(n->multipleOf));
			if (!JsCanContinue(st))
				return false;
		}
	}
	if (n->maximum &&
		JsNumCmpFast(num, &f, n->maximum, &n->f_maximum) > 0)
	{
		ok = false;
		FAIL(st, "maximum", "%s is greater than the maximum of %s",
			 JsNumStr(num), JsNumStr(n->maximum));
		if (!JsCanContinue(st))
			return false;
	}
	if (n->exclusiveMaximum &&
		JsNumCmpFast(num, &f, n->exclusiveMaximum, &n->f_exclusiveMaximum) >= 0)
	{
		ok = false;
		FAIL(st, "exclusiveMaximum",
			 "%s is not less than the exclusive maximum of %s",
			 JsNumStr(num), JsNumStr(n->exclusiveMaximum));
		if (!JsCanContinue(st))
			return false;
	}
	if (n->minimum &&
		JsNumCmpFast(num, &f, n->minimum, &n->f_minimum) < 0)
	{
		ok = false;
		FAIL(st, "minimum", "%s is less than the minimum of %s",
			 JsNumStr(num), JsNumStr(n->minimum));
		if (!JsCanContinue(st))
			return false;
	}
	if (n->exclusiveMinimum &&
		JsNumCmpFast(num, &f, n->exclusiveMinimum, &n->f_exclusiveMinimum) <= 0)
	{
		ok = false;
		FAIL(st, "exclusiveMinimum",
			 "%s is not greater than the exclusive minimum of %s",
			 JsNumStr(num), JsNumStr(n->exclusiveMinimum));
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
			if (!JsCanContinue(st))
				return false;
		}
		if (n->minLength >= 0 && len < n->minLength)
		{
			ok = false;
			FAIL(st, "minLength", "string is shorter than %lld characters",
				 (long long) n->minLength);
			if (!JsCanContinue(st))
				return false;
		}
	}
	if (n->pattern &&
		!JsRegexMatch(n->pattern, v->val.string.val, v->val.string.len))
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
		if (!JsCanContinue(st))
			return false;
	}
	if (n->minItems >= 0 && size < n->minItems)
	{
		ok = false;
		FAIL(st, "minItems", "array has fewer than %lld items",
			 (long long) n->minItems);
		if (!JsCanContinue(st))
			return false;
	}
	if (n->nprefix > 0 || n->items || n->contains)
	{
		JsIterInit(&it, jc);
		while (JsIterNext(&it, NULL, &el))
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
					if (!JsCanContinue(st))
						return false;
				}
				else if (!JsValidateChild(st, sub, &el, NULL, 0, i))
				{
					ok = false;
					if (!JsCanContinue(st))
						return false;
				}
				if (a)
					a->marks[i] = true;
			}
			if (n->contains)
			{
				bool		r;

				st->quiet++;
				r = JsValidateChild(st, n->contains, &el, NULL, 0, i);
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
			if (!JsCanContinue(st))
				return false;
		}
		if (n->maxContains >= 0 && matches > n->maxContains)
		{
			ok = false;
			FAIL(st, "maxContains",
				 "array has more than %lld items matching \"contains\"",
				 (long long) n->maxContains);
			if (!JsCanContinue(st))
				return false;
		}
	}
	if (n->uniqueItems && size > 1)
	{
		ContIter	outer;
		JsonbValue	x;

		JsIterInit(&outer, jc);
		while (JsIterNext(&outer, NULL, &x))
		{
			ContIter	inner = outer;
			JsonbValue	y;
			bool		dup = false;

			CHECK_FOR_INTERRUPTS();
			while (JsIterNext(&inner, NULL, &y))
			{
				CountWork(st);
				if (JsEqual(&x, &y))
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
		if (!ok && !JsCanContinue(st))
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
			c = JsKeyCmp(base + off, klen, names[j].name, names[j].len);
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
		if (!JsCanContinue(st))
			return false;
	}
	if (n->minProperties >= 0 && size < n->minProperties)
	{
		ok = false;
		FAIL(st, "minProperties", "object has fewer than %lld properties",
			 (long long) n->minProperties);
		if (!JsCanContinue(st))
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
				if (!JsCanContinue(st))
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
				if (!JsCanContinue(st))
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
			if (!JsCanContinue(st))
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

		JsIterInit(&it, jc);
		while (JsIterNext(&it, &key, &val))
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
					if (!JsCanContinue(st))
						return false;
				}
			}
			if (n->nprops > 0)
			{
				PropEntry  *pe = NULL;

				/* keys and n->props are sorted alike: merge */
				while (pi < n->nprops)
				{
					int			c = JsKeyCmp(n->props[pi].name, n->props[pi].len,
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
						if (!JsCanContinue(st))
							return false;
					}
					else if (!JsValidateChild(st, pe->node, &val, key.val.string.val,
											  key.val.string.len, 0))
					{
						ok = false;
						if (!JsCanContinue(st))
							return false;
					}
				}
			}
			for (j = 0; j < n->npatprops; j++)
			{
				PatProp    *pp = &n->patprops[j];

				CountWork(st);
				if (!JsRegexMatch(pp->re, key.val.string.val, key.val.string.len))
					continue;
				matched = true;
				if (!JsValidateChild(st, pp->node, &val, key.val.string.val,
									 key.val.string.len, 0))
				{
					ok = false;
					if (!JsCanContinue(st))
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
					if (!JsCanContinue(st))
						return false;
				}
				else if (!JsValidateChild(st, n->additionalProperties, &val,
										  key.val.string.val,
										  key.val.string.len, 0))
				{
					ok = false;
					if (!JsCanContinue(st))
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

	if ((n->unevaluatedProperties && JsIsObject(v)) ||
		(n->unevaluatedItems && JsIsArray(v)))
	{
		local = JsNewAnnot(JsonContainerSize(v->val.binary.data));
		a = local;
	}

#define NODE_FAILED() \
	do { ok = false; if (!JsCanContinue(st)) goto done; } while (0)

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
		FAIL(st, "type", "expected %s, got %s", JsTypeMaskNames(n->types),
			 JsValueTypeName(v));
		NODE_FAILED();
	}
	if (n->enumvals)
	{
		bool		found = false;

		for (i = 0; i < n->nenum && !found; i++)
			found = JsEqual(&n->enumvals[i], v);
		if (!found)
		{
			FAIL(st, "enum", "value is not one of the values in \"enum\"");
			NODE_FAILED();
		}
	}
	if (n->has_const && !JsEqual(&n->constval, v))
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
			Annot	   *t = a ? JsNewAnnot(a->n) : NULL;

			if (ValidateNode(st, n->anyOf[i], v, t))
			{
				any = true;
				if (!a)
					break;
				JsMergeAnnot(a, t);
			}
			JsFreeAnnot(t);
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
			Annot	   *t = a ? JsNewAnnot(a->n) : NULL;

			if (ValidateNode(st, n->oneOf[i], v, t))
			{
				count++;
				if (kept)
					JsFreeAnnot(kept);
				kept = t;
				if (count > 1)
					break;
			}
			else
				JsFreeAnnot(t);
		}
		st->quiet--;
		if (count == 1 && a)
			JsMergeAnnot(a, kept);
		JsFreeAnnot(kept);
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
		Annot	   *t = a ? JsNewAnnot(a->n) : NULL;
		bool		r;

		st->quiet++;
		r = ValidateNode(st, n->if_, v, t);
		st->quiet--;
		if (r && a)
			JsMergeAnnot(a, t);
		JsFreeAnnot(t);
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
		if (!JsValidateUnevaluated(st, n, v, local))
			NODE_FAILED();
		if (ann && ok)
			JsMergeAnnot(ann, local);
	}

done:
	JsFreeAnnot(local);
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

	JsRootValue(doc, &root);
	ok = ValidateNode(&st, schema->root, &root, NULL);
	if (errors)
		*errors = list_concat(*errors, st.errors);
	return ok;
}
