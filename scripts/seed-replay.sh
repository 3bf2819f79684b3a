#!/usr/bin/env bash
# seed-replay: the case study of the README's "The 2014 report, reproduced",
# run end to end with the kbisect commands the README gives, and printed as
# tables. A benchmark, not a test: nested Xen under TCG makes it take hours.
#
# Usage: scripts/seed-replay.sh [LADDER]
#   LADDER  a release ladder repository (kbisect ladder) holding v2.6.32.2 and
#           v3.14.5, and for the bisections the releases between and after
#           them up to v5.10.7; default: a ladder of the two tarballs in the
#           project's shared/kernels (the table and the validations only).
# Environment: KBISECT (default bin/kbisect), OUT (default a new directory
# under /tmp; the bisection jobs in an OUT of an earlier run are resumed), KERNELS (the old kernel tarballs; default ../shared/kernels),
# DURATION (each run of the table, default 30s), SKIP (space-separated
# parts to leave out: table validate first-bad fix-release window).
set -euo pipefail

LADDER=${1:-}
KBISECT=${KBISECT:-bin/kbisect}
OUT=${OUT:-$(mktemp -d /tmp/kbisect-seed-replay.XXXXXX)}
DURATION=${DURATION:-30s}
SKIP=${SKIP:-}
NOAES=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+svm,+npt

say() { echo "seed-replay: $*" >&2; }
die() { say "$*"; exit 2; }
skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

command -v jq >/dev/null || die "jq missing: apt-get install jq (make setup installs it)"
[ -x "$KBISECT" ] || die "$KBISECT missing: run make build"
mkdir -p "$OUT"
if [ -z "$LADDER" ]; then
	KERNELS=${KERNELS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/kernels}
	[ -r "$KERNELS/linux-3.14.5-x86.tar.xz" ] || die "no LADDER given and no $KERNELS/linux-3.14.5-x86.tar.xz: give a ladder or set KERNELS"
	LADDER=$OUT/seed.git
	[ -d "$LADDER" ] || "$KBISECT" ladder "$KERNELS/linux-2.6.32-x86.tar.xz" "$KERNELS/linux-3.14.5-x86.tar.xz" -o "$LADDER" >&2
fi
say "ladder $LADDER, results in $OUT"

# The seed's kernels, tinyconfig (allnoconfig for 2.6.32) with the default
# fragments and xen-guest: one kernel for QEMU and Xen.
build() { # build REV NAME
	"$KBISECT" build --repo "$LADDER" --rev "$1" --config tinyconfig --hypervisor xen --out "$OUT/$2" --json >"$OUT/$2.json"
}
build v3.14.5 k314
build v2.6.32.2 k2632
K314=$OUT/k314/bzImage
K2632=$OUT/k2632/bzImage
DEBIAN=$(ls /boot/vmlinuz-6.1* 2>/dev/null | sort | tail -1)
[ -n "$DEBIAN" ] || die "no Debian 6.1 kernel in /boot: apt-get install linux-image-amd64"

# One row of the table: a run, summed up by jq.
row() { # row NAME ARGS...
	name=$1
	shift
	set +e
	"$KBISECT" run --test natt-esp --duration "$DURATION" --keep "$OUT/$name" --json "$@" >"$OUT/$name.json"
	set -e
	jq -r --arg name "$name" '[$name, .path, .verdict, (.corruptions | length),
		.wire.verdict, ([.guests[].auth_failures] | add), .wire.checksum_errors,
		(.throughput_mbit | . * 10 | round / 10),
		((.guests[0].simd // []) | map(select(. == "aes" or . == "eagerfpu")) | join("+")),
		((.wire.cipher_block_texts // []) | join(" "))] | @tsv' "$OUT/$name.json"
}

if ! skip table; then
	say "the table: the report's symptom, the conditions that change it, and the mechanism's checks"
	{
		printf 'row\tpath\tverdict\tcorruptions\twire\tauth failures\tbad TCP checksums\tMbit/s\tSIMD\tciphertext blocks that are text\n'
		row xen-314-nat --hypervisor xen --kernel "$K314" --topology nat
		row xen-314-direct --hypervisor xen --kernel "$K314"
		row xen-314-to-61 --hypervisor xen --kernel "$K314" --peer-kernel "$DEBIAN"
		row xen-61-to-314 --hypervisor xen --kernel "$DEBIAN" --peer-kernel "$K314"
		row xen-61 --hypervisor xen --kernel "$DEBIAN"
		row qemu-314-nat --kernel "$K314" --topology nat
		row xen-314-null-sha1 --hypervisor xen --kernel "$K314" --crypto null-sha1
		row xen-2632 --hypervisor xen --kernel "$K2632"
		row xen-2632-noaesni --hypervisor xen --kernel "$K2632" --xen-cpu "$NOAES"
		row xen-314-noaesni --hypervisor xen --kernel "$K314" --xen-cpu "$NOAES"
		# The mechanism: the guest's FPU mode decides, Xen's does not.
		row xen-314-eagerfpu --hypervisor xen --kernel "$K314" --append eagerfpu=on
		row xen-314-xen-eager --hypervisor xen --kernel "$K314" --xen-append spec-ctrl=eager-fpu
	} | tee "$OUT/table.tsv"
fi

# A patch made from the tree itself (nothing of a kernel is stored in
# kbisect): the change that keeps xen_read_cr0()'s cached TS in step.
xenclts_patch() { # xenclts_patch REV DIR
	local wt=$OUT/wt-$1
	rm -rf "$wt"
	git clone -q --shared --no-checkout "$LADDER" "$wt"
	git -C "$wt" checkout -q "$1"
	perl -0pi -e 's/(static void xen_clts\(void\)\n\{.*?xen_mc_issue\(PARAVIRT_LAZY_CPU\);\n)\}\n\nstatic DEFINE_PER_CPU\(unsigned long, xen_cr0_value\);\n/static DEFINE_PER_CPU(unsigned long, xen_cr0_value);\n\n$1\n\t\/* Keep the cached CR0 in step: read_cr0() must see TS clear now. *\/\n\tthis_cpu_write(xen_cr0_value, this_cpu_read(xen_cr0_value) & ~X86_CR0_TS);\n}\n/s' "$wt/arch/x86/xen/enlighten.c"
	git -C "$wt" diff --quiet && die "$1: xen_clts() not found as expected in arch/x86/xen/enlighten.c"
	git -C "$wt" -c user.name=kbisect -c user.email=kbisect@localhost commit -qam "xen: keep the cached CR0.TS in step in xen_clts()"
	mkdir -p "$2"
	git -C "$wt" format-patch -q -1 -o "$2"
	rm -rf "$wt"
}

validate() { # validate NAME REV PATCHES ARGS...
	name=$1 rev=$2 patches=$3
	shift 3
	set +e
	"$KBISECT" validate --repo "$LADDER" --base "$rev" --patches "$patches" --config tinyconfig --hypervisor xen \
		--test natt-esp --duration "$DURATION" --budget 20m --confidence 0.99 --json "$@" >"$OUT/$name.json"
	set -e
	jq -r --arg name "$name" '.patches[] | [$name, .name, .applies, .boots, (.runs|tostring), (.failures|tostring),
		(.probability // 0 | . * 10000 | round / 10000 | tostring), .conclusion] | @tsv' "$OUT/$name.json"
}

if ! skip validate; then
	say "validation on 3.14.5: the xen_clts() change"
	xenclts_patch v3.14.5 "$OUT/patch-xenclts-314"
	validate validate-xenclts-314 v3.14.5 "$OUT/patch-xenclts-314" | tee "$OUT/validate.tsv"
fi

bisect() { # bisect NAME ARGS...: a job already in OUT is resumed (or reported if it ended)
	name=$1
	shift
	set +e
	if [ -f "$OUT/$name/journal.jsonl" ]; then
		"$KBISECT" bisect resume "$OUT/$name" --json >"$OUT/$name.json"
	else
		# One bug, many shapes (encap or decap, any length, authentication
		# failures alone): every natt-esp failure counts.
		"$KBISECT" bisect --repo "$LADDER" --hypervisor xen --config tinyconfig --run-time 30s --budget 10m \
			--confidence 0.99 --signature natt-esp --job "$OUT/$name" --json "$@" >"$OUT/$name.json"
	fi
	set -e
	jq -r --arg name "$name" '[$name, .find, .status, .culprit, .subject, (.confidence | . * 10000 | round / 10000), .runs, .builds] | @tsv' "$OUT/$name.json"
}

if git -C "$LADDER" rev-parse -q --verify v5.10.7 >/dev/null; then
	if ! skip first-bad; then
		say "first bad release without AES-NI in the guests (2.6.32.2 good, 3.14.5 bad)"
		bisect first-bad-noaesni --good v2.6.32.2 --bad v3.14.5 --xen-cpu "$NOAES" | tee "$OUT/bisect.tsv"
	fi
	if ! skip fix-release; then
		say "the first release without the bug (3.14.5 bad, 5.10.7 good)"
		bisect fix-release --find fix --bad v3.14.5 --good v5.10.7 --streams 4 | tee -a "$OUT/bisect.tsv"
	fi
	if ! skip window; then
		say "inside the fix's window: 4.0's i387.c hunk by hunk on 3.19"
		"$KBISECT" candidates --repo "$LADDER" --from v3.19.0 --to v4.0.0 --path arch/x86/kernel/i387.c --by hunk -o "$OUT/cands-i387" >&2
		validate window-i387-319 v3.19.0 "$OUT/cands-i387" --each | tee -a "$OUT/validate.tsv"
		xenclts_patch v3.19.0 "$OUT/patch-xenclts-319"
		validate validate-xenclts-319 v3.19.0 "$OUT/patch-xenclts-319" | tee -a "$OUT/validate.tsv"
	fi
else
	say "$LADDER has no v5.10.7: the bisections need the release ladder (make verify-ladder DIR=...)"
fi
say "done: $OUT"
