#!/bin/sh
# verify-old.sh: build an old kernel tree's x86_64 kernel with kbisect (table
# fixups and toolchain flags, kbisect's own checkout; the tree is only read),
# then run the natt-esp test on a pair of it and on a mixed pair (it as the
# sender, a 6.1 kernel as the receiver), and print both verdicts.
#
# Usage: scripts/verify-old.sh TREE [REV]
#   TREE  a kernel git repository (work tree or bare git dir)
#   REV   the commit to build (default HEAD)
# Environment: KBISECT (default bin/kbisect), CONFIG (default tinyconfig,
# i.e. allnoconfig plus kbisect's fragments before 3.17; or a .config file,
# which keeps its options and gets FRAGMENTS, default "qemu-x86_64 agent
# natt-esp", merged in), PEER_KERNEL (the
# 6.1 kernel of the mixed pair; default Debian's /boot/vmlinuz-6.1*),
# DURATION (default 20s), OUT (default a new directory under /tmp).
set -eu

TREE=${1:-}
REV=${2:-HEAD}
KBISECT_SET=${KBISECT:-}
KBISECT=${KBISECT:-bin/kbisect}
CONFIG=${CONFIG:-tinyconfig}
DURATION=${DURATION:-20s}

die() { echo "verify-old: $*" >&2; exit 2; }

[ -n "$TREE" ] || die "no tree: run make verify-old TREE=/path/to/kernel/git/repo [REV=commit]"
[ -d "$TREE" ] || die "TREE=$TREE is not a directory: give a kernel git repository"
git -C "$TREE" rev-parse --git-dir >/dev/null 2>&1 || die "TREE=$TREE is not a git repository (a work tree or a bare git dir)"
git -C "$TREE" cat-file -e "$REV:Makefile" 2>/dev/null || die "TREE=$TREE has no top Makefile at $REV: not a kernel tree (pick REV=...)"
if [ -z "${KBISECT_SET:-}" ] && [ -f Makefile ] && [ -d cmd/kbisect ]; then
	make -s build >/dev/null || die "make build failed"
fi
[ -x "$KBISECT" ] || die "$KBISECT missing: run make build"
if [ -z "${PEER_KERNEL:-}" ]; then
	PEER_KERNEL=$(ls /boot/vmlinuz-6.1* 2>/dev/null | sort | tail -1)
fi
[ -n "$PEER_KERNEL" ] && [ -r "$PEER_KERNEL" ] || die "no 6.1 kernel for the mixed pair: set PEER_KERNEL=/path/to/bzImage (or install linux-image-amd64)"

FRAGS=""
case "$CONFIG" in
defconfig | tinyconfig | allnoconfig) ;;
*)
	# A .config of yours: keep its options, add what the VM and the test need.
	[ -r "$CONFIG" ] || die "CONFIG=$CONFIG: no such file (give a .config, defconfig or tinyconfig)"
	for f in ${FRAGMENTS:-qemu-x86_64 agent natt-esp}; do FRAGS="$FRAGS --fragment $f"; done
	;;
esac
OUT=${OUT:-$(mktemp -d /tmp/kbisect-verify-old.XXXXXX)}
mkdir -p "$OUT"
echo "verify-old: building $REV of $TREE (config $CONFIG) into $OUT/kernel"
# shellcheck disable=SC2086
nice -n 10 "$KBISECT" build --repo "$TREE" --rev "$REV" --config "$CONFIG" $FRAGS -j2 --out "$OUT/kernel" --json >"$OUT/build.json"
echo "verify-old: built $(sed -n 's/^  "release": "\(.*\)",$/\1/p' "$OUT/build.json") with fixups: $(tr -d '\n ' <"$OUT/build.json" | sed -n 's/.*"fixups":\[\([^]]*\)\].*/\1/p' | tr -d '"' | tr , ' ')"
MODS=""
for d in "$OUT"/kernel/modules/lib/modules/*; do
	[ -f "$d/modules.dep" ] && MODS="--modules $d"
done

status=0
run() {
	name=$1
	shift
	set +e
	# shellcheck disable=SC2086
	"$KBISECT" run --test natt-esp --duration "$DURATION" --keep "$OUT/$name" --json "$@" >"$OUT/$name.json"
	rc=$?
	set -e
	v=$(sed -n 's/^  "verdict": "\(.*\)",$/\1/p' "$OUT/$name.json")
	r=$(sed -n 's/^  "reason": "\(.*\)",$/\1/p' "$OUT/$name.json")
	k=$(sed -n 's/^      "kernel_release": "\(.*\)",$/\1/p' "$OUT/$name.json" | paste -sd/ -)
	echo "verify-old: $name ($k): verdict $v: $r"
	for c in sender receiver; do
		[ -f "$OUT/$name/$c.console" ] && echo "  $c: $(grep -a -m1 'Linux version' "$OUT/$name/$c.console")"
	done
	[ -n "$v" ] || cat "$OUT/$name.json"
	[ $rc -eq 0 ] || status=1
}
# shellcheck disable=SC2086
run pair --kernel "$OUT/kernel/bzImage" $MODS
# shellcheck disable=SC2086
run mixed --kernel "$OUT/kernel/bzImage" $MODS --peer-kernel "$PEER_KERNEL"
echo "verify-old: JSON reports and consoles in $OUT"
exit $status
