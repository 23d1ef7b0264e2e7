/*-------------------------------------------------------------------------
 *
 * validator_fuzz.c
 *	  libFuzzer target for the JSON Schema validator (src/jsonschema/),
 *	  run inside a PostgreSQL backend.
 *
 * The validator needs the real backend (jsonb, numeric, the regex engine,
 * memory contexts, ereport), so this is not a standalone binary: it is a
 * loadable module (build/validator_fuzz.so) holding the src/jsonschema/ files
 * compiled with coverage instrumentation, this harness and libFuzzer
 * itself (libclang_rt.fuzzer_no_main). run.sh starts a single-user backend
 * (postgres --single) on a scratch data directory and calls
 * eb_fuzz_validator(ARRAY[libFuzzer arguments]), which hands control to
 * libFuzzer (LLVMFuzzerRunDriver). Everything else the validator calls is
 * the installed server's own code, uninstrumented.
 *
 * Input: a schema and a document, as JSON text, separated by the first NUL
 * byte (a second NUL ends the document). Without a NUL the whole input is
 * the schema, validated against a fixed set of documents and itself.
 * Input that is not valid UTF-8 or not JSON is rejected (not added to the
 * corpus): the server never hands the validator anything else.
 *
 * Each input runs in a subtransaction (as PL/pgSQL's exception blocks do),
 * so that an ERROR is caught and rolled back cleanly. Findings:
 *	 - crashes (SIGSEGV, SIGBUS, ...), Assert failures (abort), traps from
 *	   -fsanitize=undefined (SIGILL), FATAL/exit: libFuzzer reports them;
 *	 - time-outs (-timeout) and memory blow-ups (-rss_limit_mb);
 *	 - an ERROR of class XX (internal error: "cannot happen" paths), or a
 *	   schema rejected with another SQLSTATE than 22023 (invalid schema),
 *	   54001 (stack depth), 54000 (program limit) or 53200 (out of memory);
 *	 - inconsistent results: EbSchemaValidate must give the same verdict
 *	   with and without error collection, report no error for a valid
 *	   document, exactly one with all = false and at least one with
 *	   all = true for an invalid one, each with a path starting with "$",
 *	   a keyword and a message.
 * Those abort() after printing the schema and the document.
 *
 * "$ref" to other documents goes, through the resolver given to
 * EbSchemaCompile (Resolve), to a built-in set of remotes (cycles,
 * anchors, a non-schema), plus the documents of the JSON object in the file
 * named by EB_FUZZ_REMOTES (uri -> document; suite_corpus.py writes one
 * from the JSON Schema Test Suite's remotes).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "jsonschema.h"

PG_MODULE_MAGIC;

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*UserCb) (const uint8_t *Data, size_t Size));

typedef struct Remote
{
	char	   *uri;
	Jsonb	   *doc;
} Remote;

static List *Remotes = NIL;		/* of Remote *, in TopMemoryContext */
static MemoryContext InputCxt = NULL;
static bool AnySqlstate = false;

/* Built-in remotes: "$ref" targets for the mutator to find. */
static const char *const BuiltinRemotes[][2] = {
	{"http://localhost:1234/integer.json", "{\"type\": \"integer\"}"},
	{"http://localhost:1234/draft2020-12/integer.json", "{\"type\": \"integer\"}"},
	{"https://eb.fuzz/a.json", "{\"$ref\": \"https://eb.fuzz/b.json\"}"},
	{"https://eb.fuzz/b.json", "{\"$ref\": \"https://eb.fuzz/a.json\"}"},
	{"https://eb.fuzz/self.json", "{\"$ref\": \"#\"}"},
	{"https://eb.fuzz/true.json", "true"},
	{"https://eb.fuzz/false.json", "false"},
	{"https://eb.fuzz/array.json", "[1, 2]"},
	{"https://eb.fuzz/bad.json", "{\"type\": 12}"},
	{"https://eb.fuzz/draft7.json",
	"{\"$schema\": \"http://json-schema.org/draft-07/schema#\", \"definitions\": {\"a\": {\"$id\": \"#a\", \"items\": [{\"$ref\": \"#\"}]}}, \"$ref\": \"#/definitions/a\"}"},
	{"https://eb.fuzz/tree.json",
		"{\"$id\": \"https://eb.fuzz/tree.json\", \"$dynamicAnchor\": \"node\", \"type\": \"object\", "
		"\"properties\": {\"data\": true, \"children\": {\"type\": \"array\", \"items\": {\"$dynamicRef\": \"#node\"}}}}"},
	{"https://eb.fuzz/anchors.json",
		"{\"$defs\": {\"x\": {\"$anchor\": \"x\", \"type\": \"string\", \"pattern\": \"^a+$\"}, "
		"\"y\": {\"$id\": \"y.json\", \"$ref\": \"anchors.json#x\"}}, \"$ref\": \"#/$defs/y\"}"},
};

/* Documents an input without a NUL (a schema only) is validated against. */
static const char *const FixedDocuments[] = {
	"null", "true", "0", "-1.5", "1e400", "12345678901234567890.5", "\"\"", "\"aaa\"",
	"\"\\u00e9\\ud83d\\ude00\"", "[]", "[1, \"a\", null, [], {}]", "{}",
	"{\"a\": 1, \"b\": [{\"c\": \"d\"}], \"\": null}",
};

static Jsonb *
ParseJsonb(const char *text)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

static void
AddRemote(const char *uri, Jsonb *doc)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Remote	   *r = palloc(sizeof(Remote));

	r->uri = pstrdup(uri);
	r->doc = doc;
	Remotes = lappend(Remotes, r);
	MemoryContextSwitchTo(old);
}

/* Loads {"uri": document, ...} from a file into the remotes. */
static void
LoadRemotesFile(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	StringInfoData buf;
	char		chunk[8192];
	size_t		n;
	Jsonb	   *all;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	MemoryContext old;

	if (f == NULL)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not open EB_FUZZ_REMOTES file \"%s\": %m", path)));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, n);
	fclose(f);
	old = MemoryContextSwitchTo(TopMemoryContext);
	all = ParseJsonb(buf.data);
	if (!JB_ROOT_IS_OBJECT(all))
		elog(ERROR, "EB_FUZZ_REMOTES must hold a JSON object (uri -> document)");
	it = JsonbIteratorInit(&all->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key)
		{
			Jsonb	   *doc;

			if (v.type == jbvBinary)
				doc = JsonbValueToJsonb(&v);
			else if (v.type == jbvBool)
				doc = ParseJsonb(v.val.boolean ? "true" : "false");
			else
				doc = ParseJsonb("null");	/* not a schema either way */
			AddRemote(key, doc);
			key = NULL;
		}
	}
	MemoryContextSwitchTo(old);
}

static Jsonb *
Resolve(const char *uri, void *arg)
{
	ListCell   *lc;

	foreach(lc, Remotes)
	{
		Remote	   *r = lfirst(lc);

		if (strcmp(r->uri, uri) == 0)
			return r->doc;
	}
	return NULL;
}

/* ---------------------------------------------------------------- checks */

static const char *CurSchemaText;
static const char *CurDocText;

static void
Fail(const char *fmt,...) pg_attribute_printf(1, 2);

static void
Fail(const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "\nvalidator_fuzz: invariant violated: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n  schema:   %s\n  document: %s\n",
			CurSchemaText ? CurSchemaText : "(none)",
			CurDocText ? CurDocText : "(none)");
	fflush(stderr);
	abort();
}

static void
CheckErrors(List *errors, const char *what)
{
	ListCell   *lc;

	foreach(lc, errors)
	{
		EbSchemaError *e = lfirst(lc);

		if (e == NULL || e->path == NULL || e->keyword == NULL || e->message == NULL)
			Fail("%s: an error without path, keyword or message", what);
		if (e->path[0] != '$')
			Fail("%s: error path \"%s\" does not start with \"$\"", what, e->path);
		if (e->keyword[0] == '\0' || e->message[0] == '\0')
			Fail("%s: empty keyword or message (path %s)", what, e->path);
	}
}

static void
CheckValidate(EbSchema *schema, Jsonb *doc)
{
	List	   *first = NIL;
	List	   *all = NIL;
	bool		plain = EbSchemaValidate(schema, doc, false, NULL);
	bool		with_first = EbSchemaValidate(schema, doc, false, &first);
	bool		with_all = EbSchemaValidate(schema, doc, true, &all);

	if (plain != with_first || plain != with_all)
		Fail("verdicts differ: no errors %d, first error %d, all errors %d",
			 plain, with_first, with_all);
	if (plain && (first != NIL || all != NIL))
		Fail("valid, yet %d/%d errors reported", list_length(first), list_length(all));
	if (!plain && list_length(first) != 1)
		Fail("invalid, and %d errors reported with all = false (expected 1)", list_length(first));
	if (!plain && list_length(all) < 1)
		Fail("invalid, and no error reported with all = true");
	CheckErrors(first, "all = false");
	CheckErrors(all, "all = true");
}

/* An ERROR the validator may raise while compiling (or validating). */
static void
CheckError(ErrorData *edata, bool compiling)
{
	int			code = edata->sqlerrcode;
	const char *state = unpack_sql_state(code);

	if (state[0] == 'X' && state[1] == 'X')
		Fail("internal error %s while %s: %s", state,
			 compiling ? "compiling" : "validating", edata->message);
	if (AnySqlstate)
		return;
	if (compiling && code != ERRCODE_INVALID_PARAMETER_VALUE &&
		code != ERRCODE_STATEMENT_TOO_COMPLEX && code != ERRCODE_PROGRAM_LIMIT_EXCEEDED &&
		code != ERRCODE_OUT_OF_MEMORY)
		Fail("schema rejected with SQLSTATE %s, not 22023: %s", state, edata->message);
}

/* ---------------------------------------------------------------- driver */

static int
TestOneInput(const uint8_t *data, size_t size)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	const uint8_t *nul = memchr(data, 0, size);
	size_t		slen = nul ? (size_t) (nul - data) : size;
	char	   *stext;
	char	   *dtext = NULL;
	volatile int phase = 0;		/* 0 parsing, 1 compiling, 2 validating */
	volatile bool rejected = false;

	stext = MemoryContextAlloc(InputCxt, slen + 1);
	memcpy(stext, data, slen);
	stext[slen] = '\0';
	if (!pg_verifymbstr(stext, slen, true))
		return -1;
	if (nul)
	{
		const uint8_t *d = nul + 1;
		const uint8_t *nul2 = memchr(d, 0, size - (d - data));
		size_t		dlen = (nul2 ? nul2 : data + size) - d;

		dtext = MemoryContextAlloc(InputCxt, dlen + 1);
		memcpy(dtext, d, dlen);
		dtext[dlen] = '\0';
		if (!pg_verifymbstr(dtext, dlen, true))
			return -1;
	}
	CurSchemaText = stext;
	CurDocText = dtext;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(InputCxt);
	PG_TRY();
	{
		Jsonb	   *schema = ParseJsonb(stext);
		Jsonb	   *doc = dtext ? ParseJsonb(dtext) : NULL;
		EbSchema   *compiled;

		phase = 1;
		compiled = EbSchemaCompile(schema, Resolve, NULL, InputCxt);
		phase = 2;
		if (doc)
			CheckValidate(compiled, doc);
		else
		{
			for (int i = 0; i < lengthof(FixedDocuments); i++)
			{
				CurDocText = FixedDocuments[i];
				CheckValidate(compiled, ParseJsonb(FixedDocuments[i]));
			}
			CurDocText = "(the schema itself)";
			CheckValidate(compiled, schema);
		}
		EbSchemaFree(compiled);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(InputCxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (phase == 0)
			rejected = true;	/* not JSON: not worth keeping */
		else
			CheckError(edata, phase == 1);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	CurSchemaText = CurDocText = NULL;
	MemoryContextReset(InputCxt);
	return rejected ? -1 : 0;
}

PG_FUNCTION_INFO_V1(eb_fuzz_validator);

/*
 * eb_fuzz_validator(args text[]) RETURNS integer: runs libFuzzer with
 * these arguments (flags, then corpus directories). libFuzzer normally
 * ends the process itself (exit 0 when -max_total_time is reached).
 */
Datum
eb_fuzz_validator(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			argc;
	char	  **argv;
	const char *remotes = getenv("EB_FUZZ_REMOTES");

	AnySqlstate = getenv("EB_FUZZ_ANY_SQLSTATE") && strcmp(getenv("EB_FUZZ_ANY_SQLSTATE"), "0") != 0;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	argv = MemoryContextAllocZero(TopMemoryContext, sizeof(char *) * (nelems + 2));
	argv[0] = "validator_fuzz";
	for (int i = 0; i < nelems; i++)
		argv[i + 1] = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(elems[i]));
	argc = nelems + 1;

	for (int i = 0; i < lengthof(BuiltinRemotes); i++)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		AddRemote(BuiltinRemotes[i][0], ParseJsonb(BuiltinRemotes[i][1]));
		MemoryContextSwitchTo(old);
	}
	if (remotes && remotes[0])
		LoadRemotesFile(remotes);
	InputCxt = AllocSetContextCreate(TopMemoryContext, "validator_fuzz input",
									 ALLOCSET_DEFAULT_SIZES);

	/*
	 * libFuzzer leaves alone a signal that already has a handler, and the
	 * backend has its own for SIGALRM (timeouts), SIGINT and SIGTERM: hand
	 * them to libFuzzer, or -timeout never fires and ^C does not stop it.
	 */
	pqsignal(SIGALRM, SIG_DFL);
	pqsignal(SIGINT, SIG_DFL);
	pqsignal(SIGTERM, SIG_DFL);
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, TestOneInput));
}
