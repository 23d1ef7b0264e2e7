/*-------------------------------------------------------------------------
 *
 * access.c
 *	  Who may do what with a subscription: its owner, the roles granted a
 *	  right on it, the check against the role that called, and the gate
 *	  through which the management functions learn who that is.
 *
 * Every subscription has an owner (the role that created it) and two
 * lists of roles granted a right on it: consume (poll, ack, nack,
 * extend_lease) and manage (alter_subscription, pause, resume, seek,
 * redrive, purge_dead_letters, unsubscribe). Superusers and roles with the
 * privileges of the owner (members that inherit it) hold every right; only
 * they grant, revoke and give the subscription to another owner.
 *
 * A right is checked against the role that called the SQL function:
 * GetUserId() when it starts, i.e. current_user, which inside a SECURITY
 * DEFINER function is that function's owner (never the session's user: a
 * superuser calling someone's SECURITY DEFINER function does not lend it
 * the superuser's rights).
 *
 * The management functions are PL/pgSQL that must run as the extension's
 * owner to change eventbus's tables, and a SECURITY DEFINER function cannot
 * see who called it. So the public function (eventbus.seek, say) is
 * eventbus_gate: a C function that runs as its caller and calls the
 * internal one (eventbus._seek) with the caller as an added first
 * argument. The internal functions are SECURITY DEFINER and not executable
 * by PUBLIC, so no one but the extension's owner can call them with a
 * caller of their choosing. The consume functions are C: they check the
 * right themselves and then run as the extension's owner
 * (EbBecomeOwner) until they return; an error puts the user back as the
 * (sub)transaction aborts.
 *
 * Locking: none; the rights come with the subscription row the caller
 * read.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"
#include "access.h"
#include "sub.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

static const char *const RightNames[] = {"consume", "manage", "own"};

/* Whether a role is in a list of grantees, directly or through membership. */
static bool
AmongGrantees(Oid role, const Oid *grantees, int n)
{
	for (int i = 0; i < n; i++)
		if (has_privs_of_role(role, grantees[i]))
			return true;
	return false;
}

/* Whether the role holds the right: superuser, the owner's privileges, or granted. */
bool
EbHasRight(const EbRights *rights, Oid role, EbRight right)
{
	if (superuser_arg(role) || has_privs_of_role(role, rights->owner))
		return true;
	switch (right)
	{
		case EB_RIGHT_CONSUME:
			return AmongGrantees(role, rights->consumers, rights->nconsumers);
		case EB_RIGHT_MANAGE:
			return AmongGrantees(role, rights->managers, rights->nmanagers);
		case EB_RIGHT_OWN:
			break;
	}
	return false;
}

/* A role's name for a message, or its OID when it was dropped. */
static const char *
RoleName(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name != NULL ? quote_identifier(name) : psprintf("%u", role);
}

/* Raises 42501 naming the subscription, the role and the right, unless the role holds it. */
void
EbCheckRight(const EbRights *rights, const char *sub_name, Oid role, EbRight right)
{
	const char *owner;

	if (EbHasRight(rights, role, right))
		return;
	owner = RoleName(rights->owner);
	if (right == EB_RIGHT_OWN)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for subscription \"%s\"", sub_name),
				 errdetail("Only its owner %s, roles with the privileges of that role, and superusers may grant, revoke or give it away; role %s may not.",
						   owner, RoleName(role)),
				 errhint("Ask %s or a superuser.", owner)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for subscription \"%s\"", sub_name),
			 errdetail("Role %s does not have the %s right on it.", RoleName(role), RightNames[right]),
			 errhint("Its owner %s may grant it: SELECT eventbus.grant_subscription('%s', '%s', '%s').",
					 owner, sub_name, RoleName(role), RightNames[right])));
}

/* The extension's owner: the owner of its schema, which CREATE EXTENSION made. */
static Oid
ExtensionOwner(void)
{
	HeapTuple	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(EbSchemaOid()));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "eventbus: schema %s not found", EB_SCHEMA);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Runs what follows as the extension's owner, in a security-restricted
 * way only as far as SetUserIdAndSecContext's LOCAL_USERID_CHANGE goes
 * (SET ROLE is refused meanwhile). EbRestoreUser puts the caller back.
 */
void
EbBecomeOwner(EbUserSave *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(ExtensionOwner(), save->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
EbRestoreUser(const EbUserSave *save)
{
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/* The internal function a gate calls, looked up once per call site. */
typedef struct GateTarget
{
	FmgrInfo	flinfo;
	int			right;			/* EbRight the caller needs on the subscription named by the first argument; -1: none */
	bool		relay;			/* the function acts on a relay: a missing one is named so */
} GateTarget;

/* The gates that act on an existing subscription (named by their first argument), and the right each needs. */
static const struct
{
	const char *function;
	EbRight		right;
}			GateRights[] =
{
	{"alter_subscription", EB_RIGHT_MANAGE},
	{"unsubscribe", EB_RIGHT_MANAGE},
	{"pause", EB_RIGHT_MANAGE},
	{"resume", EB_RIGHT_MANAGE},
	{"seek", EB_RIGHT_MANAGE},
	{"redrive", EB_RIGHT_MANAGE},
	{"purge_dead_letters", EB_RIGHT_MANAGE},
	{"grant_subscription", EB_RIGHT_OWN},
	{"revoke_subscription", EB_RIGHT_OWN},
	{"alter_subscription_owner", EB_RIGHT_OWN},
	{"alter_relay", EB_RIGHT_OWN},
	{"drop_relay", EB_RIGHT_MANAGE},
};

/* Finds eventbus._<name>(regrole, <the gate's arguments>) for the gate function. */
static GateTarget *
GateLookup(FmgrInfo *gate)
{
	Oid		   *argtypes;
	int			nargs;
	Oid			rettype = get_func_signature(gate->fn_oid, &argtypes, &nargs);
	Oid			types[FUNC_MAX_ARGS];
	Oid			target;
	char	   *name = psprintf("_%s", get_func_name(gate->fn_oid));
	GateTarget *t;

	if (nargs + 1 > FUNC_MAX_ARGS)
		elog(ERROR, "eventbus: %s has too many arguments for a gate", name + 1);
	types[0] = REGROLEOID;
	memcpy(types + 1, argtypes, sizeof(Oid) * nargs);
	target = LookupFuncName(list_make2(makeString(get_namespace_name(get_func_namespace(gate->fn_oid))),
									   makeString(name)),
							nargs + 1, types, false);
	if (get_func_rettype(target) != rettype || get_func_retset(target))
		elog(ERROR, "eventbus: %s does not return what %s returns", name, name + 1);
	t = MemoryContextAllocZero(gate->fn_mcxt, sizeof(GateTarget));
	fmgr_info_cxt(target, &t->flinfo, gate->fn_mcxt);
	t->right = -1;
	for (int i = 0; i < lengthof(GateRights); i++)
		if (strcmp(name + 1, GateRights[i].function) == 0)
			t->right = GateRights[i].right;
	t->relay = strstr(name, "_relay") != NULL;
	if (t->right >= 0 && (nargs < 1 || argtypes[0] != TEXTOID))
		elog(ERROR, "eventbus: %s does not name a subscription first", name + 1);
	gate->fn_extra = t;
	return t;
}

PG_FUNCTION_INFO_V1(eventbus_gate);

/*
 * The public management functions (see the file header): calls
 * eventbus._<own name>(current_user, <own arguments>) and returns what it
 * returns.
 */
Datum
eventbus_gate(PG_FUNCTION_ARGS)
{
	GateTarget *t = fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Datum		result;

	if (t == NULL)
		t = GateLookup(fcinfo->flinfo);
	/*
	 * The right on the subscription, checked here, as the caller, so that
	 * the error comes from the function the user called (the internal
	 * function checks again: its callers are trusted, not its caller).
	 */
	if (t->right >= 0 && !fcinfo->args[0].isnull)
	{
		char	   *subname = TextDatumGetCString(fcinfo->args[0].value);
		EbSub	   *sub = t->relay ? EbSubFind(subname) : EbSubByName(subname);

		if (sub == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("relay \"%s\" does not exist", subname),
					 errhint("Create it with eventbus.create_relay(name, patterns, server => ...); list them in eventbus.relays.")));

		EbCheckRight(&sub->rights, sub->name, GetUserId(), (EbRight) t->right);
	}
	InitFunctionCallInfoData(*inner, &t->flinfo, fcinfo->nargs + 1, fcinfo->fncollation, NULL, NULL);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	for (int i = 0; i < fcinfo->nargs; i++)
	{
		if (fcinfo->args[i].isnull && t->flinfo.fn_strict)
			PG_RETURN_NULL();
		inner->args[i + 1] = fcinfo->args[i];
	}
	result = FunctionCallInvoke(inner);
	fcinfo->isnull = inner->isnull;
	return result;
}

/* A right's name as SQL gives it; raises 22023 for another. */
static EbRight
RightFromText(text *t)
{
	char	   *s = text_to_cstring(t);

	for (int r = EB_RIGHT_CONSUME; r <= EB_RIGHT_OWN; r++)
		if (strcmp(s, RightNames[r]) == 0)
			return (EbRight) r;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid subscription right \"%s\"", s),
			 errhint("The rights are 'consume' (poll, ack, nack, extend_lease) and 'manage' (alter, pause, resume, seek, redrive, purge, unsubscribe).")));
	pg_unreachable();
}

PG_FUNCTION_INFO_V1(eventbus_check_right);

/*
 * SQL eventbus._check_right(caller, name, owner, consumers, managers,
 * needs): raises 42501 unless caller holds right "needs" on the
 * subscription of that name with those columns.
 */
Datum
eventbus_check_right(PG_FUNCTION_ARGS)
{
	EbRights	rights;

	EbRightsFromArrays(&rights, PG_GETARG_OID(2),
					   PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3),
					   PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4));
	EbCheckRight(&rights, text_to_cstring(PG_GETARG_TEXT_PP(1)), PG_GETARG_OID(0),
				 RightFromText(PG_GETARG_TEXT_PP(5)));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eventbus_visible);

/*
 * SQL eventbus._visible(owner, consumers, managers): whether current_user
 * holds some right on a subscription with those columns (the views show
 * only those).
 */
Datum
eventbus_visible(PG_FUNCTION_ARGS)
{
	EbRights	rights;
	Oid			role = GetUserId();

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(superuser_arg(role));
	EbRightsFromArrays(&rights, PG_GETARG_OID(0),
					   PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
					   PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2));
	PG_RETURN_BOOL(EbHasRight(&rights, role, EB_RIGHT_CONSUME) ||
				   EbHasRight(&rights, role, EB_RIGHT_MANAGE));
}
