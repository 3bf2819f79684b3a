package kbuild

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kbisect/kbisect/kconfigs"
)

// FixupEnv is what a fixup may depend on besides the tree.
type FixupEnv struct {
	Version kconfigs.Version
	// GCCMajor is the major version of the compiler that will build.
	GCCMajor int
}

// Fixup is one change kbisect makes to its own checkout of an old tree so
// that today's toolchain builds a kernel that boots. Each mirrors an
// upstream fix; none is ever applied to the user's repository.
type Fixup struct {
	// ID names the fixup in cache keys and reports; change it (e.g. bump
	// its /N suffix) whenever Apply changes what it writes.
	ID string
	// Upstream is the upstream commit the fixup mirrors (with its subject
	// or release), or what upstream did instead.
	Upstream string
	// Summary says what breaks without it.
	Summary string
	// Versions limits the fixup to a version range (zero: any version).
	Versions kconfigs.Range
	// Detect, if set, decides whether the tree still has the broken
	// construct (it must be false once Apply ran).
	Detect func(t Tree, env FixupEnv) (bool, error)
	// Apply changes the tree. It must be idempotent.
	Apply func(t WritableTree, env FixupEnv) error
}

// Applies reports whether f is needed for the tree t.
func (f Fixup) Applies(t Tree, env FixupEnv) (bool, error) {
	if !f.Versions.Contains(env.Version) {
		return false, nil
	}
	if f.Detect == nil {
		return true, nil
	}
	ok, err := f.Detect(t, env)
	if err != nil {
		return false, fmt.Errorf("fixup %s: %w", f.ID, err)
	}
	return ok, nil
}

// Select returns the fixups of table that apply to t.
func Select(table []Fixup, t Tree, env FixupEnv) ([]Fixup, error) {
	var out []Fixup
	for _, f := range table {
		ok, err := f.Applies(t, env)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// ApplyAll applies fixups to t in order.
func ApplyAll(fixups []Fixup, t WritableTree, env FixupEnv) error {
	for _, f := range fixups {
		if err := f.Apply(t, env); err != nil {
			return fmt.Errorf("fixup %s (%s): %w", f.ID, f.Upstream, err)
		}
	}
	return nil
}

// FixupIDs returns the IDs of fixups, sorted.
func FixupIDs(fixups []Fixup) []string {
	ids := make([]string, 0, len(fixups))
	for _, f := range fixups {
		ids = append(ids, f.ID)
	}
	sort.Strings(ids)
	return ids
}

// Fixups is the table of old-tree fixups, in the order they are applied.
// It covers the breakages facts.md lists for 2.6.32..3.14 on Debian 12
// (gcc 12, binutils 2.40, perl 5.36, make 4.3); issue #8 verifies them on
// real trees and adds the rest. Compiler and make flags are in Toolchains.
var Fixups = []Fixup{
	{
		ID:       "compiler-gcc-header/1",
		Upstream: "cb984d101b30 (compiler-gcc: integrate the various compiler-gcc[345].h files, v4.2); 71458cfc782e (kernel: add support for gcc 5)",
		Summary:  "include/linux/compiler-gcc.h includes compiler-gcc<major>.h, which does not exist for gcc 5 and later: add it as a copy of compiler-gcc4.h",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 2, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			if env.GCCMajor <= 4 {
				return false, nil
			}
			gcc, err := t.ReadFile("include/linux/compiler-gcc.h")
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			if err != nil || !strings.Contains(string(gcc), "gcc_header(__GNUC__)") {
				return false, err
			}
			has4, err := exists(t, "include/linux/compiler-gcc4.h")
			if err != nil || !has4 {
				return false, err
			}
			hasN, err := exists(t, gccHeader(env.GCCMajor))
			return !hasN, err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			src, err := t.ReadFile("include/linux/compiler-gcc4.h")
			if err != nil {
				return err
			}
			return t.WriteFile(gccHeader(env.GCCMajor), src)
		},
	},
	{
		ID:       "timeconst-defined-array/1",
		Upstream: "70730bca1331 (kernel: Replace timeconst.pl with a bc script, v3.9)",
		Summary:  "kernel/timeconst.pl uses defined(@array), a fatal error since perl 5.22: test the array itself",
		Versions: kconfigs.Range{Until: kconfigs.V(3, 9, 0)},
		Detect:   contains("kernel/timeconst.pl", "defined(@val)"),
		Apply:    replace("kernel/timeconst.pl", "defined(@val)", "@val", 1),
	},
	{
		ID:       "vdso-m64/1",
		Upstream: "upstream changed the vdso link flags to -m64/-m32 in 2.6.37",
		Summary:  "arch/x86/vdso/Makefile passes the linker emulation -m elf_x86_64 (and -m elf_i386) to gcc, which rejects it: use -m64/-m32",
		Versions: kconfigs.Range{Until: kconfigs.V(2, 6, 37)},
		Detect:   contains("arch/x86/vdso/Makefile", "VDSO_LDFLAGS_vdso.lds = -m elf_x86_64"),
		Apply: func(t WritableTree, env FixupEnv) error {
			if err := replace("arch/x86/vdso/Makefile", "VDSO_LDFLAGS_vdso.lds = -m elf_x86_64", "VDSO_LDFLAGS_vdso.lds = -m64", 1)(t, env); err != nil {
				return err
			}
			return replace("arch/x86/vdso/Makefile", "VDSO_LDFLAGS_vdso32.lds = -m elf_i386", "VDSO_LDFLAGS_vdso32.lds = -m32", -1)(t, env)
		},
	},
	{
		ID:       "make-mixed-rules/1",
		Upstream: "\"fixes for using make 3.82\" (v2.6.36)",
		Summary:  "rules mixing explicit and pattern targets (`config %config:`, `/ %/:`, mkmakefile's `$(all) %/:`) are fatal in make 3.82..4.2 and deprecated in 4.3: split them",
		Versions: kconfigs.Range{Until: kconfigs.V(2, 6, 37)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			for _, f := range mixedRuleFiles {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return false, err
				}
				if mixedRule.Match(data) {
					return true, nil
				}
			}
			return false, nil
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			for _, f := range mixedRuleFiles {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return err
				}
				if out := splitMixedRules(data); out != nil {
					if err := t.WriteFile(f, out); err != nil {
						return err
					}
				}
			}
			return nil
		},
	},
	{
		ID:       "decompressor-no-sse/1",
		Upstream: "later trees build the decompressor with -mno-mmx -mno-sse (arch/x86/boot/compressed/Makefile, by 3.x)",
		Summary:  "gcc 12 vectorises the decompressor's zlib with SSE before SSE is enabled: a #UD that triple-faults with no output",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 0, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			data, err := t.ReadFile("arch/x86/boot/compressed/Makefile")
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil && !strings.Contains(string(data), "-mno-sse") && kbuildCflagsLine.Match(data), err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			data, err := t.ReadFile("arch/x86/boot/compressed/Makefile")
			if err != nil || strings.Contains(string(data), "-mno-sse") {
				return err
			}
			loc := kbuildCflagsLine.FindIndex(data)
			if loc == nil {
				return fmt.Errorf("arch/x86/boot/compressed/Makefile: no KBUILD_CFLAGS := line")
			}
			out := string(data[:loc[1]]) + "\nKBUILD_CFLAGS += -mno-mmx -mno-sse -mno-sse2" + string(data[loc[1]:])
			return t.WriteFile("arch/x86/boot/compressed/Makefile", []byte(out))
		},
	},
	{
		ID:       "ld-max-page-size/1",
		Upstream: "e3d03598e8ae (x86/build/64: Force the linker to use 2MB page size, v4.16)",
		Summary:  "binutils >= 2.31 links with -z separate-code and 4 KiB pages: SeaBIOS never hands over to the kernel; force 2 MiB max-page-size",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 16, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			for _, f := range maxPageFiles {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return false, err
				}
				if ldflagsLine.Match(data) && !strings.Contains(string(data), "max-page-size") {
					return true, nil
				}
			}
			return false, nil
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			for _, f := range maxPageFiles {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return err
				}
				if strings.Contains(string(data), "max-page-size") {
					continue
				}
				out := ldflagsLine.ReplaceAll(data, []byte("${1} -z max-page-size=0x200000"))
				if err := t.WriteFile(f, out); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		ID:       "early-idt-stub-padding/1",
		Upstream: "cdeb6048940f (x86/asm/entry/64: Stop relying on magic JMP behavior for early_idt_handlers, v4.1)",
		Summary:  "binutils 2.40 emits 2-byte JMPs in the early exception stubs of head_64.S, but the IDT is set up assuming fixed-size slots: the first early fault lands mid-stub and the kernel halts silently; pad each stub to its slot",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 1, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			data, err := t.ReadFile(headS)
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil && stubLoop.Match(data) && !strings.Contains(string(data), ".fill early_idt_handlers"), err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			data, err := t.ReadFile(headS)
			if err != nil || strings.Contains(string(data), ".fill early_idt_handlers") {
				return err
			}
			slot, err := earlyIDTSlot(t, data)
			if err != nil {
				return err
			}
			m := stubLoop.FindSubmatchIndex(data)
			if m == nil {
				return fmt.Errorf("%s: early_idt_handlers loop not found", headS)
			}
			// Insert the padding after "i = i + 1" (group 1 ends there).
			pad := fmt.Sprintf("\n\t.fill early_idt_handlers + i*%d - ., 1, 0xcc", slot)
			out := string(data[:m[3]]) + pad + string(data[m[3]:])
			return t.WriteFile(headS, []byte(out))
		},
	},
	{
		ID:       "module-plt32/1",
		Upstream: "b21ebf2fb4cd (x86: Treat R_X86_64_PLT32 as R_X86_64_PC32, v4.16)",
		Summary:  "binutils >= 2.31 emits R_X86_64_PLT32 for calls; the module loader and the relocs tool only know R_X86_64_PC32",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 16, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			for _, f := range plt32Files {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return false, err
				}
				if pc32Case.Match(data) && !plt32Case.Match(data) {
					return true, nil
				}
			}
			return false, nil
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			for _, f := range plt32Files {
				data, err := t.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return err
				}
				if plt32Case.Match(data) {
					continue
				}
				out := pc32Case.ReplaceAll(data, []byte("${1}case R_X86_64_PC32:\n${1}case R_X86_64_PLT32:"))
				if err := t.WriteFile(f, out); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		ID:       "build-user-host/1",
		Upstream: "scripts/mkcompile_h reads KBUILD_BUILD_USER and KBUILD_BUILD_HOST since about 2.6.37 (kbuild: \"Allow to override LINUX_COMPILE_BY and LINUX_COMPILE_HOST\")",
		Summary:  "before, the banner (\"Linux version ... (user@host)\") always came from whoami and hostname: the kernel differs from machine to machine and so does its signature; honour kbisect's KBUILD_BUILD_USER/HOST",
		Versions: kconfigs.Range{Until: kconfigs.V(3, 0, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			data, err := t.ReadFile(mkcompileH)
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil && !strings.Contains(string(data), "KBUILD_BUILD_USER") && strings.Contains(string(data), compileByWhoami), err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			data, err := t.ReadFile(mkcompileH)
			if err != nil || strings.Contains(string(data), "KBUILD_BUILD_USER") {
				return err
			}
			out := strings.Replace(string(data), compileByWhoami, "\\\"${KBUILD_BUILD_USER:-`whoami`}\\\"", 1)
			out = strings.Replace(out, "`hostname | $UTS_TRUNCATE`", "`echo ${KBUILD_BUILD_HOST:-$(hostname)} | $UTS_TRUNCATE`", 1)
			return t.WriteFile(mkcompileH, []byte(out))
		},
	},
	{
		ID:       "module-device-table-typeof/1",
		Upstream: "21bdd17b21b4 (module: allow multiple calls to MODULE_DEVICE_TABLE() per module, v4.1) declares the alias with typeof(name)",
		Summary:  "MODULE_DEVICE_TABLE declares its alias as struct <type>_id, which for x86cpu (struct x86_cpu_id) does not exist: gcc 12 stops with \"storage size of '__mod_x86cpu_device_table' isn't known\" in every modular x86cpu driver; declare it with the table's own type (same symbol name, so modpost is unchanged)",
		Versions: kconfigs.Range{Until: kconfigs.V(4, 1, 0)},
		Detect:   containsRe(moduleH, moduleGenericTable),
		Apply: func(t WritableTree, env FixupEnv) error {
			data, err := t.ReadFile(moduleH)
			if err != nil {
				return err
			}
			return t.WriteFile(moduleH, moduleGenericTable.ReplaceAll(data, []byte("${1}typeof(name)${2}")))
		},
	},
	{
		ID:       "xen-callback-end-name/1",
		Upstream: "later 2.6.3x trees close the entry with END(xen_do_hypervisor_callback) (3.14 has it)",
		Summary:  "arch/x86/kernel/entry_64.S closes ENTRY(xen_do_hypervisor_callback) with END(do_hypervisor_callback), a symbol that does not exist: binutils 2.40 stops with \".size expression for do_hypervisor_callback does not evaluate to a constant\" in every Xen guest kernel; name the right symbol",
		Versions: kconfigs.Range{Until: kconfigs.V(3, 15, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			data, err := t.ReadFile(entry64S)
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil && strings.Contains(string(data), "ENTRY(xen_do_hypervisor_callback)") && strings.Contains(string(data), "END(do_hypervisor_callback)"), err
		},
		Apply: replace(entry64S, "END(do_hypervisor_callback)", "END(xen_do_hypervisor_callback)", 1),
	},
	{
		ID:       "acpi-os-initialize-init/1",
		Upstream: "3.10 declares acpi_os_initialize() __init in include/acpi/acpiosxf.h (the ladder: __initdata in 3.9.6, __init in 3.10.99)",
		Summary:  "include/acpi/acpiosxf.h declares the function acpi_os_initialize() __initdata: since 3.1 drivers/acpi/osl.c also has initialised __initdata data, and gcc 12 stops with \"'osi_setup_entries' causes a section type conflict with 'acpi_os_initialize'\"; declare it __init as its definition is",
		Versions: kconfigs.Range{Until: kconfigs.V(3, 10, 0)},
		Detect:   contains(acpiOSXF, "acpi_status __initdata acpi_os_initialize(void);"),
		Apply:    replace(acpiOSXF, "acpi_status __initdata acpi_os_initialize(void);", "acpi_status __init acpi_os_initialize(void);", 1),
	},
	{
		ID:       "subcmd-xrealloc/1",
		Upstream: "52a9dab6d892 (libsubcmd: Fix use-after-free for realloc(..., 0), v5.17)",
		Summary:  "tools/lib/subcmd's xrealloc() retries realloc() on the pointer a failed realloc(ptr, 0) may have freed; gcc 12 stops objtool's build (4.19 and later build it for ORC) with \"pointer may be used after 'realloc'\" [-Werror=use-after-free]: realloc once, as upstream does",
		Versions: kconfigs.Range{Until: kconfigs.V(5, 17, 0)},
		Detect:   contains(subcmdUtil, subcmdXreallocOld),
		Apply:    replace(subcmdUtil, subcmdXreallocOld, subcmdXreallocNew, 1),
	},
	{
		ID:       "objtool-empty-object/1",
		Upstream: "1d489151e9f9 (objtool: Don't fail on missing symbol table, v5.11)",
		Summary:  "binutils >= 2.36 writes no symbol table for an object with no symbols, and arch/x86/entry/thunk_64.o is empty without preemption; objtool stops the build with \"thunk_64.o: warning: objtool: missing symbol table\" (4.19.78, 5.4.0, 5.10.7 from tinyconfig): read an empty object as empty, as upstream does",
		Versions: kconfigs.Range{Until: kconfigs.V(5, 11, 0)},
		Detect:   contains(objtoolElf, objtoolNoSymtabOld),
		Apply:    replace(objtoolElf, objtoolNoSymtabOld, objtoolNoSymtabNew, 1),
	},
	{
		ID:       "vendor-s3c-adc-arm-only/1",
		Upstream: "none: a vendor (Android) addition; mainline's S3C2410 touchscreen depends on ARCH_S3C2410",
		Summary:  "the shared 2.6.32.2 tree (a vendor tree defaulting to ARM) adds ADC_S3C and TOUCHSCREEN_S3C, default y with no architecture dependency: x86_64_defconfig builds them and stops on \"plat/adc.h: No such file or directory\" (ARM's header); make them ARM-only",
		Versions: kconfigs.Range{Until: kconfigs.V(2, 6, 33)},
		Detect:   contains(touchscreenKconfig, s3cADCOld),
		Apply:    replace(touchscreenKconfig, s3cADCOld, s3cADCNew, 1),
	},
	{
		ID:       "rdtsc-barrier-always-inline/1",
		Upstream: "2.6.35 declares rdtsc_barrier() __always_inline (the ladder's 2.6.35 has it, 2.6.34 not)",
		Summary:  "with CONFIG_OPTIMIZE_INLINING (x86_64_defconfig sets it) gcc 12 makes rdtsc_barrier() an out-of-line kernel function that the vsyscall page's vread_tsc() calls from user space: init dies at its first clock read (2.6.32.2 from x86_64_defconfig: \"init[1]: segfault at ffffffff8101646d\", rdtsc_barrier); make it always inline",
		Versions: kconfigs.Range{Until: kconfigs.V(2, 6, 35)},
		Detect:   contains(systemH, rdtscBarrierOld),
		Apply:    replace(systemH, rdtscBarrierOld, rdtscBarrierNew, 1),
	},
	{
		ID:       "firmware-dirs-addprefix/1",
		Upstream: "2.6.38's firmware/Makefile makes firmware-dirs with addprefix (the ladder's 2.6.38 has it, 2.6.35 not)",
		Summary:  "firmware-dirs ends each directory in two slashes (patsubst of a dir that already ends in one), so make >= 3.82 finds no rule for the directory a built-in firmware's .gen.S needs (2.6.35 from x86_64_defconfig: \"No rule to make target '.../firmware/e100/'\"); build the names with addprefix",
		Versions: kconfigs.Range{Until: kconfigs.V(2, 6, 38)},
		Detect:   contains(firmwareMakefile, firmwareDirsOld),
		Apply:    replace(firmwareMakefile, firmwareDirsOld, firmwareDirsNew, 1),
	},
	{
		ID:       "srctree-build-products/1",
		Upstream: "none: `make mrproper`, which the kernel asks for; some snapshots commit a build's output",
		Summary:  "a tree with a build's .config or include/config/ committed (a vendor snapshot: the ladder's 2.6.38) cannot be built out of tree: \"... is not clean, please run 'make mrproper'\"; remove the configuration state from kbisect's checkout",
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			for _, f := range []string{".config", "include/config/auto.conf", "include/config/kernel.release"} {
				if ok, err := exists(t, f); ok || err != nil {
					return ok, err
				}
			}
			return false, nil
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			for _, f := range []string{".config", "include/config", "include/generated"} {
				if err := t.Remove(f); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		ID:       "boot-force-order-once/1",
		Upstream: "df6d4f9db79c (x86/boot/compressed: Don't declare __force_order in kaslr_64.c, v5.6; 4.19.109, 4.14.173)",
		Summary:  "gcc >= 10 defaults to -fno-common, and the decompressor defines __force_order in both kaslr_64.c and pgtable_64.c: with RANDOMIZE_BASE (x86_64_defconfig) ld stops on \"multiple definition of `__force_order'\" (4.19.78 from x86_64_defconfig); keep pgtable_64.c's",
		Versions: kconfigs.Range{Until: kconfigs.V(5, 6, 0)},
		Detect:   contains(kaslr64, forceOrderKaslrOld),
		Apply:    replace(kaslr64, forceOrderKaslrOld, "", 1),
	},
	{
		ID:       "selinux-kernel-socket-h/1",
		Upstream: "dfbd199a7cfe (selinux: use kernel linux/socket.h for genheaders and mdp, v5.1; 4.14.114, 4.19.38)",
		Summary:  "SELinux's host tools count address families with the host's <sys/socket.h>, whose PF_MAX today's glibc has raised: \"classmap.h: #error New address family defined, please update secclass_map\" (4.14.5 from x86_64_defconfig); take the kernel's own linux/socket.h",
		Versions: kconfigs.Range{Until: kconfigs.V(5, 1, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			checked, err := contains(selinuxClassmap, "#if PF_MAX > ")(t, env)
			if !checked || err != nil {
				return false, err
			}
			fixed, err := contains(selinuxClassmap, selinuxKernelSocket)(t, env)
			return !fixed, err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			fixed, err := contains(selinuxClassmap, selinuxKernelSocket)(t, env)
			if err != nil {
				return err
			}
			if !fixed {
				if err := replace(selinuxClassmap, "#include <linux/capability.h>\n", "#include <linux/capability.h>\n"+selinuxKernelSocket, 1)(t, env); err != nil {
					return err
				}
			}
			for _, f := range selinuxHostTools {
				if err := replace(f, "#include <sys/socket.h>\n", "", 1)(t, env); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		},
	},
	{
		ID:       "start-secondary-no-tail-call/1",
		Upstream: "a9a3ed1eff36 (x86: Fix early boot crash on gcc-10, third try, v5.7)",
		Summary:  "gcc >= 10 turns start_secondary's last call into a tail call after the stack canary changed: boot panic on SMP with the stack protector; keep the call from being a tail call",
		Versions: kconfigs.Range{Until: kconfigs.V(5, 7, 0)},
		Detect: func(t Tree, env FixupEnv) (bool, error) {
			data, err := t.ReadFile(smpboot)
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return err == nil && idleTail.Match(data), err
		},
		Apply: func(t WritableTree, env FixupEnv) error {
			data, err := t.ReadFile(smpboot)
			if err != nil {
				return err
			}
			out := idleTail.ReplaceAll(data, []byte("${1}\n\tmb(); /* kbisect: no tail call (upstream a9a3ed1eff36) */\n}"))
			return t.WriteFile(smpboot, out)
		},
	},
}

const (
	headS      = "arch/x86/kernel/head_64.S"
	entry64S   = "arch/x86/kernel/entry_64.S"
	acpiOSXF   = "include/acpi/acpiosxf.h"
	smpboot    = "arch/x86/kernel/smpboot.c"
	mkcompileH = "scripts/mkcompile_h"
	moduleH    = "include/linux/module.h"
	// compileByWhoami is 2.6.32's LINUX_COMPILE_BY value in mkcompile_h.
	compileByWhoami = "\\\"`whoami`\\\""
)

var (
	mixedRuleFiles = []string{"Makefile", "scripts/mkmakefile"}
	// `config %config: deps`, `/ %/: deps`, `\$(all) %/: all`.
	mixedRule        = regexp.MustCompile(`(?m)^(config|/|\\\$\(all\)) (%config|%/):(.*)$`)
	kbuildCflagsLine = regexp.MustCompile(`(?m)^KBUILD_CFLAGS := .*$`)
	maxPageFiles     = []string{"arch/x86/Makefile", "arch/x86/boot/compressed/Makefile"}
	ldflagsLine      = regexp.MustCompile(`(?m)^(LDFLAGS := -m elf_\$\(UTS_MACHINE\))[ \t]*$`)
	// The early exception stub loop; group 1 ends after "i = i + 1".
	stubLoop   = regexp.MustCompile(`(?s)early_idt_handlers:.*?\.rept NUM_EXCEPTION_VECTORS.*?jmp early_idt_handler\n(\s*i = i \+ 1)`)
	slotDecl   = regexp.MustCompile(`early_idt_handlers\[(?:NUM_EXCEPTION_VECTORS)?\]\[([0-9+ ]+)\]`)
	plt32Files = []string{"arch/x86/kernel/module.c", "arch/x86/kernel/module_64.c", "arch/x86/tools/relocs.c"}
	pc32Case   = regexp.MustCompile(`(?m)^([ \t]*)case R_X86_64_PC32:`)
	plt32Case  = regexp.MustCompile(`(?m)^[ \t]*case R_X86_64_PLT32:`)
	// MODULE_GENERIC_TABLE's alias declaration (2.6.32 .. 4.0).
	moduleGenericTable = regexp.MustCompile(`(extern const )struct gtype##_id( __mod_##gtype##_table)`)
	idleTail           = regexp.MustCompile(`(?m)^(\t(?:cpu_idle\(\)|cpu_startup_entry\(CPUHP_ONLINE\));)\n}`)
)

func gccHeader(major int) string {
	return "include/linux/compiler-gcc" + strconv.Itoa(major) + ".h"
}

// contains returns a detector for a file holding s.
func contains(file, s string) func(Tree, FixupEnv) (bool, error) {
	return func(t Tree, _ FixupEnv) (bool, error) {
		data, err := t.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil && strings.Contains(string(data), s), err
	}
}

// containsRe returns a detector for a file matching re.
func containsRe(file string, re *regexp.Regexp) func(Tree, FixupEnv) (bool, error) {
	return func(t Tree, _ FixupEnv) (bool, error) {
		data, err := t.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil && re.Match(data), err
	}
}

// replace returns an edit replacing old by new in file (n as in
// strings.Replace); a file without old is left alone.
func replace(file, old, new string, n int) func(WritableTree, FixupEnv) error {
	return func(t WritableTree, _ FixupEnv) error {
		data, err := t.ReadFile(file)
		if err != nil {
			return err
		}
		return t.WriteFile(file, []byte(strings.Replace(string(data), old, new, n)))
	}
}

// splitMixedRules rewrites "a %b: deps\n<recipe>" as two rules with the same
// recipe; it returns nil if there is nothing to rewrite.
func splitMixedRules(data []byte) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	changed := false
	for i := 0; i < len(lines); i++ {
		m := mixedRule.FindStringSubmatch(strings.TrimSuffix(lines[i], "\n"))
		if m == nil {
			out.WriteString(lines[i])
			continue
		}
		j := i + 1
		for j < len(lines) && strings.HasPrefix(lines[j], "\t") {
			j++
		}
		recipe := strings.Join(lines[i+1:j], "")
		fmt.Fprintf(&out, "%s:%s\n%s\n%s:%s\n%s", m[1], m[3], recipe, m[2], m[3], recipe)
		i = j - 1
		changed = true
	}
	if !changed {
		return nil
	}
	return []byte(out.String())
}

// earlyIDTSlot returns the size of one early exception stub: from the C
// declaration of early_idt_handlers (9 = 2+2+5 in 3.x, 10 in 2.6.x), else
// from the stub's shape.
func earlyIDTSlot(t Tree, head []byte) (int, error) {
	for _, f := range []string{"arch/x86/include/asm/segment.h", "arch/x86/kernel/head64.c", "arch/x86/include/asm/desc.h"} {
		data, err := t.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m := slotDecl.FindSubmatch(data); m != nil {
			n := 0
			for _, p := range strings.Split(string(m[1]), "+") {
				x, err := strconv.Atoi(strings.TrimSpace(p))
				if err != nil {
					return 0, fmt.Errorf("%s: early_idt_handlers size %q: %w", f, m[1], err)
				}
				n += x
			}
			return n, nil
		}
	}
	if strings.Contains(string(head), "movl $i, %esi") {
		return 10, nil // movl $i,%esi (5) + jmp rel32 (5)
	}
	return 9, nil // 2 + pushq $i (2) + jmp rel32 (5)
}

// systemH declares rdtsc_barrier() in 2.6.32 to 2.6.34 as rdtscBarrierOld.
const (
	systemH         = "arch/x86/include/asm/system.h"
	rdtscBarrierOld = "static inline void rdtsc_barrier(void)"
	rdtscBarrierNew = "static __always_inline void rdtsc_barrier(void)"
)

// firmwareMakefile builds firmware-dirs as firmwareDirsOld before 2.6.38:
// "%/" appended to $(dir ...) names, which already end in "/".
const (
	firmwareMakefile = "firmware/Makefile"
	firmwareDirsOld  = "firmware-dirs := $(sort $(patsubst %,$(objtree)/$(obj)/%/,$(dir $(fw-external-y) $(fw-shipped-all))))"
	firmwareDirsNew  = "firmware-dirs := $(sort $(addprefix $(objtree)/$(obj)/,$(dir $(fw-external-y) $(fw-shipped-all))))"
)

// kaslr64 defines the decompressor's __force_order (forceOrderKaslrOld)
// from 4.13 until upstream df6d4f9db79c; pgtable_64.c defines it too.
const (
	kaslr64            = "arch/x86/boot/compressed/kaslr_64.c"
	forceOrderKaslrOld = "/* Used by pgtable.h asm code to force instruction serialization. */\nunsigned long __force_order;\n\n"
)

// selinuxClassmap checks PF_MAX (4.11 on); until upstream dfbd199a7cfe the
// host tools that include it (selinuxHostTools) take PF_MAX from the host.
var selinuxHostTools = []string{"scripts/selinux/genheaders/genheaders.c", "scripts/selinux/mdp/mdp.c"}

const (
	selinuxClassmap     = "security/selinux/include/classmap.h"
	selinuxKernelSocket = "#include <linux/socket.h>\n"
)

// touchscreenKconfig holds the vendor ADC_S3C entry of the shared 2.6.32.2
// tree (s3cADCOld), s3cADCNew the entry made ARM-only.
const (
	touchscreenKconfig = "drivers/input/touchscreen/Kconfig"
	s3cADCOld          = "config ADC_S3C\n\tbool \"s3c adc inferface support\"\n\tdefault y\n"
	s3cADCNew          = "config ADC_S3C\n\tbool \"s3c adc inferface support\"\n\tdepends on ARM\n\tdefault y\n"
)

// subcmdUtil holds libsubcmd's xrealloc() (4.5 to 5.16), and
// subcmdXreallocOld its body before upstream 52a9dab6d892; objtoolElf
// objtool's read_symbols(), objtoolNoSymtabOld its refusal of an object
// without a symbol table before upstream 1d489151e9f9.
const (
	subcmdUtil         = "tools/lib/subcmd/subcmd-util.h"
	objtoolElf         = "tools/objtool/elf.c"
	objtoolNoSymtabOld = `	if (!symtab) {
		WARN("missing symbol table");
		return -1;
	}`
	objtoolNoSymtabNew = `	if (!symtab) {
		/*
		 * A missing symbol table is actually possible if it's an empty
		 * .o file.  This can happen for thunk_64.o. (kbisect: upstream
		 * 1d489151e9f9)
		 */
		return 0;
	}`
	subcmdXreallocOld = `	void *ret = realloc(ptr, size);
	if (!ret && !size)
		ret = realloc(ptr, 1);
	if (!ret) {
		ret = realloc(ptr, size);
		if (!ret && !size)
			ret = realloc(ptr, 1);
		if (!ret)
			die("Out of memory, realloc failed");
	}
	return ret;`
	subcmdXreallocNew = `	void *ret = realloc(ptr, size);
	if (!ret)
		die("Out of memory, realloc failed");
	return ret;`
)
