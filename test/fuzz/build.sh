#!/usr/bin/env bash
# Builds the libFuzzer targets into test/fuzz/build/ (clang 14+, libFuzzer):
#
#   topic_fuzz          standalone binary: src/topic.c (topic and pattern
#                       grammar, matching) with test/fuzz/pgstubs.c in place
#                       of the backend; ASan + UBSan
#   validator_fuzz.so   loadable module: src/jsonschema/*.c (the JSON Schema
#                       validator) with coverage, the harness and libFuzzer,
#                       run inside a single-user backend by run.sh; UBSan
#                       (its shared runtime also gives stack traces on
#                       crashes); no ASan (it deadlocks a backend it is
#                       preloaded into)
#
#   build.sh [topic|validator]...   (default: both)
#
# A target is rebuilt when one of its sources is newer (EB_FUZZ_REBUILD=1:
# always).
#
#   CC          clang (default: clang)
#   PG_CONFIG   pg_config of the server (default: PostgreSQL 15's)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$HERE/build
CC=${CC:-clang}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
TARGETS=${*:-topic validator}

command -v "$CC" >/dev/null || { echo "build.sh: $CC not found (apt-get install clang)" >&2; exit 1; }
INC=$("$PG_CONFIG" --includedir-server) || { echo "build.sh: no pg_config ($PG_CONFIG)" >&2; exit 1; }
[ -f "$INC/postgres.h" ] || { echo "build.sh: no server headers in $INC (apt-get install postgresql-server-dev-15)" >&2; exit 1; }
# libpgport: pg_vsnprintf and friends, which port.h substitutes for printf.
PGPORT=$("$PG_CONFIG" --libdir)/libpgport.a
[ -f "$PGPORT" ] || PGPORT=$("$PG_CONFIG" --pkglibdir)/libpgport.a
FUZZER_NO_MAIN=$("$CC" -print-resource-dir)/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a

mkdir -p "$BUILD"
# -fwrapv and -fno-strict-aliasing as PostgreSQL itself is built.
COMMON=(-g -O1 -fno-omit-frame-pointer -std=gnu11 -fwrapv -fno-strict-aliasing
	-Wall -Wno-ignored-attributes -Wno-unused-command-line-argument
	-Werror=implicit-function-declaration -I"$ROOT/src" -I"$HERE" -I"$INC")

# up_to_date OUTPUT INPUT...: OUTPUT exists and is newer than every INPUT.
up_to_date() {
	local out=$1 f
	shift
	[ -e "$out" ] || return 1
	[ -n "${EB_FUZZ_REBUILD:-}" ] && return 1
	for f in "$@" "$HERE/build.sh"; do
		[ "$f" -nt "$out" ] && return 1
	done
	return 0
}

for target in $TARGETS; do
	case $target in
	topic)
		if up_to_date "$BUILD/topic_fuzz" "$ROOT/src/topic.c" "$ROOT/src/eventbus.h" \
			"$HERE/pgstubs.c" "$HERE/pgstubs.h" "$HERE/topic_fuzz.c"; then
			echo "up to date: $BUILD/topic_fuzz"
			continue
		fi
		CFLAGS=("${COMMON[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
		"$CC" "${CFLAGS[@]}" -c "$ROOT/src/topic.c" -o "$BUILD/topic.o"
		"$CC" "${CFLAGS[@]}" -c "$HERE/pgstubs.c" -o "$BUILD/pgstubs.o"
		"$CC" "${CFLAGS[@]}" -c "$HERE/topic_fuzz.c" -o "$BUILD/topic_fuzz.o"
		"$CC" "${CFLAGS[@]}" "$BUILD/topic_fuzz.o" "$BUILD/topic.o" "$BUILD/pgstubs.o" \
			"$PGPORT" -o "$BUILD/topic_fuzz"
		echo "built $BUILD/topic_fuzz"
		;;
	validator)
		[ -f "$FUZZER_NO_MAIN" ] || { echo "build.sh: no $FUZZER_NO_MAIN (libFuzzer without main)" >&2; exit 1; }
		VALIDATOR_SRC=("$ROOT"/src/jsonschema/*.c)
		if up_to_date "$BUILD/validator_fuzz.so" "${VALIDATOR_SRC[@]}" "$ROOT/src/jsonschema.h" \
			"$ROOT/src/jsonschema/jsonschema_int.h" "$HERE/validator_fuzz.c"; then
			echo "up to date: $BUILD/validator_fuzz.so"
			continue
		fi
		# UBSan's shared runtime, found through the module's rpath.
		RTDIR=$(dirname "$FUZZER_NO_MAIN")
		CFLAGS=("${COMMON[@]}" -fPIC -fsanitize=fuzzer-no-link,undefined
			-fno-sanitize-recover=undefined -shared-libsan)
		VALIDATOR_OBJ=()
		for src in "${VALIDATOR_SRC[@]}"; do
			obj=$BUILD/jsonschema-$(basename "$src" .c).o
			"$CC" "${CFLAGS[@]}" -c "$src" -o "$obj"
			VALIDATOR_OBJ+=("$obj")
		done
		"$CC" "${CFLAGS[@]}" -c "$HERE/validator_fuzz.c" -o "$BUILD/validator_fuzz.o"
		# -Bsymbolic: the validator's calls stay in this module even if
		# eventbus.so (with its own copy) is loaded in the same backend.
		"$CC" -shared -shared-libsan -fsanitize=undefined -Wl,-Bsymbolic -Wl,-rpath,"$RTDIR" \
			-o "$BUILD/validator_fuzz.so" \
			"$BUILD/validator_fuzz.o" "${VALIDATOR_OBJ[@]}" \
			-Wl,--whole-archive "$FUZZER_NO_MAIN" -Wl,--no-whole-archive -lstdc++ -lm
		echo "built $BUILD/validator_fuzz.so"
		;;
	*)
		echo "build.sh: unknown target $target (topic, validator)" >&2
		exit 1
		;;
	esac
done
