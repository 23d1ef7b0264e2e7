/*-------------------------------------------------------------------------
 *
 * acl.c
 *	  Per-topic rights: which topics a role may publish to, and which
 *	  patterns it may subscribe with (eventbus.topic_acl).
 *
 * A row (role, action, pattern) lets the role, and the roles that have
 * its privileges, publish to the topics the pattern matches (action
 * 'publish'), or subscribe with patterns the pattern covers: every topic
 * they match, it matches (action 'subscribe'), and read those topics'
 * events in eventbus.events. With no row of an action at all, that action
 * is not restricted (what eventbus did before ACLs); superusers are never
 * restricted.
 *
 * publish checks each event's topic against a per-backend cache: the
 * patterns of the current user, compiled once, and the answer per topic.
 * The cache is dropped when eventbus.topic_acl changes (a relcache
 * invalidation that _acl_changed() sends), when roles or memberships
 * change (pg_authid, pg_auth_members), and when the current user is
 * another one; it is read with the latest snapshot.
 *
 * Whether one pattern covers another is decided exactly, on the words:
 * pattern i is covered by pattern o when no topic matches i and not o.
 * Both are automata over words ("*" any one word, "#" any number of
 * words), and a topic that tells them apart, if any, uses only the
 * literal words of the two patterns and one word of neither; PatternCovers
 * searches the pairs (state of i, set of states of o) reachable on those
 * words for one where i accepts and o does not.
 *
 * Locking: eventbus.topic_acl is read with AccessShareLock.
 *
 *-------------------------------------------------------------------------
 */
#include "eventbus.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* Columns of eventbus.topic_acl (sql/35_acl.sql), 1-based. */
enum
{
	ACL_ROLE = 1,
	ACL_ACTION,
	ACL_PATTERN
};

typedef enum EbAclAction
{
	EB_ACL_PUBLISH,
	EB_ACL_SUBSCRIBE
} EbAclAction;

/* What one role may do, by action. */
typedef struct RoleAcl
{
	bool		restricted[2];	/* some row of the action exists */
	int			npatterns[2];
	EbPattern **patterns[2];	/* the role's patterns (its own and its roles'), each palloc'd:
								 * a pattern's words point into its own text */
	char	  **texts[2];		/* the same, as written */
} RoleAcl;

/* The answer for one topic (the key: the topic, NUL-padded). */
typedef struct TopicAnswer
{
	char		topic[EB_TOPIC_MAX_BYTES + 1];
	bool		allowed;
} TopicAnswer;

static MemoryContext AclCxt = NULL;
static bool AclValid = false;
static Oid	AclUser = InvalidOid;
static Oid	AclRelid = InvalidOid;
static RoleAcl CurrentAcl;
static HTAB *Answers[2];

/* Reads the rows of eventbus.topic_acl that apply to role into *acl, in cxt. */
static void
LoadRoleAcl(Oid role, RoleAcl *acl, MemoryContext cxt)
{
	Oid			relid = get_relname_relid("topic_acl", EbSchemaOid());
	Relation	rel;
	Snapshot	snap;
	TableScanDesc scan;
	TupleDesc	desc;
	HeapTuple	tuple;
	int			cap[2] = {0, 0};
	bool		super = superuser_arg(role);

	memset(acl, 0, sizeof(*acl));
	if (!OidIsValid(relid))
		return;					/* a version without topic ACLs, not updated yet: nothing restricted */
	rel = EbTableOpen(relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());	/* what committed last, even in REPEATABLE READ */
	scan = table_beginscan(rel, snap, 0, NULL);
	desc = RelationGetDescr(rel);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			grantee = DatumGetObjectId(heap_getattr(tuple, ACL_ROLE, desc, &isnull));
		char	   *action = TextDatumGetCString(heap_getattr(tuple, ACL_ACTION, desc, &isnull));
		int			a = strcmp(action, "publish") == 0 ? EB_ACL_PUBLISH : EB_ACL_SUBSCRIBE;
		text	   *pattern;
		MemoryContext old;

		acl->restricted[a] = true;
		if (super || !has_privs_of_role(role, grantee))
			continue;
		pattern = DatumGetTextPP(heap_getattr(tuple, ACL_PATTERN, desc, &isnull));
		old = MemoryContextSwitchTo(cxt);
		if (acl->npatterns[a] == cap[a])
		{
			cap[a] = Max(8, cap[a] * 2);
			acl->patterns[a] = acl->patterns[a] == NULL ? palloc(sizeof(EbPattern *) * cap[a])
				: repalloc(acl->patterns[a], sizeof(EbPattern *) * cap[a]);
			acl->texts[a] = acl->texts[a] == NULL ? palloc(sizeof(char *) * cap[a])
				: repalloc(acl->texts[a], sizeof(char *) * cap[a]);
		}
		acl->patterns[a][acl->npatterns[a]] = palloc(sizeof(EbPattern));
		EbCompilePattern(VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern), acl->patterns[a][acl->npatterns[a]]);
		acl->texts[a][acl->npatterns[a]] = text_to_cstring(pattern);
		acl->npatterns[a]++;
		MemoryContextSwitchTo(old);
	}
	if (super)
		acl->restricted[EB_ACL_PUBLISH] = acl->restricted[EB_ACL_SUBSCRIBE] = false;
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
}

static void
AclRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == AclRelid)
		AclValid = false;
}

static void
AclSyscacheCallback(Datum arg, int cacheid, uint32 hashvalue)
{
	AclValid = false;
}

/* The current user's ACL, loaded when the cache is not valid for them. */
static RoleAcl *
CurrentRoleAcl(void)
{
	Oid			user = GetUserId();

	if (AclValid && user == AclUser)
		return &CurrentAcl;
	if (AclCxt == NULL)
		AclCxt = AllocSetContextCreate(TopMemoryContext, "eventbus topic ACL", ALLOCSET_SMALL_SIZES);
	/*
	 * Valid from before the load: an invalidation taken in while loading
	 * (table_open accepts them) marks it invalid again, and it is loaded
	 * once more. Should the load fail, it stays invalid.
	 */
	do
	{
		AclValid = false;
		MemoryContextReset(AclCxt);
		AclRelid = get_relname_relid("topic_acl", EbSchemaOid());
		AclUser = user;
		AclValid = true;
		PG_TRY();
		{
			LoadRoleAcl(user, &CurrentAcl, AclCxt);
		}
		PG_CATCH();
		{
			AclValid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	} while (!AclValid);
	for (int a = 0; a < 2; a++)
	{
		HASHCTL		ctl;

		ctl.keysize = EB_TOPIC_MAX_BYTES + 1;
		ctl.entrysize = sizeof(TopicAnswer);
		ctl.hcxt = AclCxt;
		Answers[a] = hash_create("eventbus topic ACL answers", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	return &CurrentAcl;
}

/* Whether the current user may act on the topic (answers cached per topic). */
static bool
TopicAllowed(EbAclAction a, const char *topic, int len)
{
	RoleAcl    *acl = CurrentRoleAcl();
	char		key[EB_TOPIC_MAX_BYTES + 1] = {0};
	TopicAnswer *ans;
	bool		found;

	if (!acl->restricted[a])
		return true;
	memcpy(key, topic, Min(len, EB_TOPIC_MAX_BYTES));
	ans = hash_search(Answers[a], key, HASH_ENTER, &found);
	if (!found)
	{
		ans->allowed = false;
		for (int i = 0; i < acl->npatterns[a] && !ans->allowed; i++)
			ans->allowed = EbPatternMatches(acl->patterns[a][i], topic, len);
	}
	return ans->allowed;
}

/* The role's patterns of an action, for a message. */
static char *
PatternList(const RoleAcl *acl, EbAclAction a)
{
	StringInfoData buf;

	if (acl->npatterns[a] == 0)
		return pstrdup("none");
	initStringInfo(&buf);
	for (int i = 0; i < acl->npatterns[a]; i++)
		appendStringInfo(&buf, "%s\"%s\"", i > 0 ? ", " : "", acl->texts[a][i]);
	return buf.data;
}

/* Raises 42501 unless the current user may publish to the topic (publish.c). */
void
EbCheckPublishAcl(const char *topic, int len)
{
	if (TopicAllowed(EB_ACL_PUBLISH, topic, len))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to publish to topic \"%.*s\"", len, topic),
			 errdetail("Role %s may publish only to topics matching: %s.",
					   GetUserNameFromId(GetUserId(), false), PatternList(&CurrentAcl, EB_ACL_PUBLISH)),
			 errhint("A superuser grants more with eventbus.grant_publish(role, pattern).")));
}

/* ---- pattern covers pattern ---- */

/* The states of a pattern's automaton: 0 .. nwords (accepting: nwords). */
typedef uint64 StateSet;

/* Adds the states "#" words can skip to (a "#" matches no word too). */
static StateSet
Closure(const EbPattern *p, StateSet s)
{
	for (int k = 0; k < p->nwords; k++)
		if ((s & ((StateSet) 1 << k)) && p->words[k].kind == EB_WORD_HASH)
			s |= (StateSet) 1 << (k + 1);
	return s;
}

/* Where the states go on one word (sym < 0: a word of neither pattern). */
static StateSet
Step(const EbPattern *p, StateSet s, const EbWord *sym)
{
	StateSet	next = 0;

	for (int k = 0; k < p->nwords; k++)
	{
		const EbWord *w = &p->words[k];

		if (!(s & ((StateSet) 1 << k)))
			continue;
		if (w->kind == EB_WORD_HASH)
			next |= (StateSet) 1 << k;	/* "#" takes the word and stays */
		else if (w->kind == EB_WORD_STAR ||
				 (sym != NULL && w->len == sym->len && memcmp(w->str, sym->str, w->len) == 0))
			next |= (StateSet) 1 << (k + 1);
	}
	return Closure(p, next);
}

/*
 * Whether every topic that inner matches, outer matches. The words to try:
 * each literal of either pattern, and one word of neither (NULL). Explores
 * the pairs (states of inner, states of outer) breadth-first; a pair where
 * inner accepts and outer does not, after at least one word (a topic has
 * one), is a topic that tells them apart.
 */
static bool
PatternCovers(const EbPattern *outer, const EbPattern *inner)
{
	const EbWord *syms[2 * EB_TOPIC_MAX_WORDS + 1];
	int			nsyms = 0;
	StateSet	iacc = (StateSet) 1 << inner->nwords;
	StateSet	oacc = (StateSet) 1 << outer->nwords;
	StateSet   *seen_i;
	StateSet   *seen_o;
	int			nseen = 0;
	int			maxseen = 4096;
	int			head = 0;

	for (int side = 0; side < 2; side++)
	{
		const EbPattern *p = side == 0 ? outer : inner;

		for (int k = 0; k < p->nwords; k++)
			if (p->words[k].kind == EB_WORD_LITERAL)
				syms[nsyms++] = &p->words[k];
	}
	syms[nsyms++] = NULL;

	seen_i = palloc(sizeof(StateSet) * maxseen);
	seen_o = palloc(sizeof(StateSet) * maxseen);
	seen_i[nseen] = Closure(inner, 1);
	seen_o[nseen++] = Closure(outer, 1);
	while (head < nseen)
	{
		StateSet	si = seen_i[head];
		StateSet	so = seen_o[head++];

		CHECK_FOR_INTERRUPTS();
		for (int y = 0; y < nsyms; y++)
		{
			StateSet	ni = Step(inner, si, syms[y]);
			StateSet	no = Step(outer, so, syms[y]);
			bool		known = false;

			if (ni == 0)
				continue;		/* inner matches no topic this way */
			if ((ni & iacc) && !(no & oacc))
			{
				pfree(seen_i);
				pfree(seen_o);
				return false;
			}
			for (int k = 0; k < nseen && !known; k++)
				known = seen_i[k] == ni && seen_o[k] == no;
			if (known)
				continue;
			if (nseen == maxseen)
			{
				pfree(seen_i);
				pfree(seen_o);
				return false;	/* too many to tell: not covered (the safe answer) */
			}
			seen_i[nseen] = ni;
			seen_o[nseen++] = no;
		}
	}
	pfree(seen_i);
	pfree(seen_o);
	return true;
}

PG_FUNCTION_INFO_V1(eventbus_pattern_covers);

/* SQL eventbus._pattern_covers(outer, inner): every topic inner matches, outer matches. */
Datum
eventbus_pattern_covers(PG_FUNCTION_ARGS)
{
	text	   *o = PG_GETARG_TEXT_PP(0);
	text	   *i = PG_GETARG_TEXT_PP(1);
	EbPattern	outer;
	EbPattern	inner;

	EbCompilePattern(VARDATA_ANY(o), VARSIZE_ANY_EXHDR(o), &outer);
	EbCompilePattern(VARDATA_ANY(i), VARSIZE_ANY_EXHDR(i), &inner);
	PG_RETURN_BOOL(PatternCovers(&outer, &inner));
}

PG_FUNCTION_INFO_V1(eventbus_check_subscribe_acl);

/*
 * SQL eventbus._check_subscribe_acl(caller, patterns): raises 42501
 * unless each pattern is covered by one of the caller's subscribe
 * patterns (when subscribing is restricted at all).
 */
Datum
eventbus_check_subscribe_acl(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	RoleAcl		acl;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	LoadRoleAcl(role, &acl, CurrentMemoryContext);
	if (!acl.restricted[EB_ACL_SUBSCRIBE])
		PG_RETURN_VOID();
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int e = 0; e < n; e++)
	{
		text	   *t;
		EbPattern	p;
		bool		covered = false;

		if (nulls[e])
			continue;
		t = DatumGetTextPP(elems[e]);
		EbCompilePattern(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &p);
		for (int k = 0; k < acl.npatterns[EB_ACL_SUBSCRIBE] && !covered; k++)
			covered = PatternCovers(acl.patterns[EB_ACL_SUBSCRIBE][k], &p);
		if (!covered)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to subscribe to \"%s\"", text_to_cstring(t)),
					 errdetail("Role %s may subscribe only with patterns covered by: %s.",
							   GetUserNameFromId(role, false), PatternList(&acl, EB_ACL_SUBSCRIBE)),
					 errhint("A superuser grants more with eventbus.grant_subscribe(role, pattern).")));
	}
	PG_RETURN_VOID();
}

/* Whether the current user may read the topic's events (eventbus.events, context.c). */
bool
EbMayReadTopic(const char *topic, int len)
{
	return TopicAllowed(EB_ACL_SUBSCRIBE, topic, len);
}

PG_FUNCTION_INFO_V1(eventbus_may_read_topic);

/*
 * SQL eventbus._may_read_topic(topic): whether current_user may see the
 * topic's events in eventbus.events (a subscribe pattern matches it, or
 * subscribing is not restricted).
 */
Datum
eventbus_may_read_topic(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(TopicAllowed(EB_ACL_SUBSCRIBE, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

PG_FUNCTION_INFO_V1(eventbus_acl_changed);

/* SQL eventbus._acl_changed(): every backend reloads its topic ACL. */
Datum
eventbus_acl_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(EbRelid("topic_acl"));
	PG_RETURN_VOID();
}

/* Registers the invalidation callbacks; called once from _PG_init. */
void
EbAclInit(void)
{
	CacheRegisterRelcacheCallback(AclRelcacheCallback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, AclSyscacheCallback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, AclSyscacheCallback, (Datum) 0);	/* superuser, inherit */
}
