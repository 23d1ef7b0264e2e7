/*-------------------------------------------------------------------------
 *
 * unevaluated.c
 *	  unevaluatedItems and unevaluatedProperties in JSON Schema validation:
 *	  the check of the items and properties no other keyword evaluated.
 *
 * Annotations: unevaluatedItems and unevaluatedProperties need to know
 * which items and properties the adjacent keywords and in-place
 * applicators evaluated.  A schema that has one of them passes an
 * "Annot" (one flag per item or property) down through its in-place
 * applicators; a subschema's marks are kept only when it is valid.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "jsonschema_int.h"

/* Validates the unevaluatedItems/unevaluatedProperties keywords. */
bool
JsValidateUnevaluated(VState *st, SchemaNode *n, JsonbValue *v, Annot *a)
{
	bool		ok = true;
	bool		isobj = JsIsObject(v);
	SchemaNode *sub = isobj ? n->unevaluatedProperties : n->unevaluatedItems;
	const char *kw = isobj ? "unevaluatedProperties" : "unevaluatedItems";
	ContIter	it;
	JsonbValue	key,
				val;

	JsIterInit(&it, v->val.binary.data);
	while (JsIterNext(&it, isobj ? &key : NULL, &val))
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
			r = JsValidateChild(st, sub, &val, key.val.string.val,
								key.val.string.len, 0);
		else
			r = JsValidateChild(st, sub, &val, NULL, 0, i);
		if (!r)
		{
			ok = false;
			if (!JsCanContinue(st))
				return false;
		}
		a->marks[i] = true;
	}
	return ok;
}
