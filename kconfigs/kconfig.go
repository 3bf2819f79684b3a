package kconfigs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

// Kconfig is what kbisect knows of a tree's Kconfig files: for each symbol,
// where it is defined, what it depends on, whether it has a prompt and who
// selects it. It is read to explain why a wanted symbol did not survive
// olddefconfig; it does not compute values (the kernel's own conf does).
type Kconfig struct {
	Syms map[string]*KSymbol
}

// KSymbol is one Kconfig symbol.
type KSymbol struct {
	Name string
	Defs []*KDef
	// SelectedBy lists the symbols that select or imply this one.
	SelectedBy []KSelect
}

// KDef is one definition (config or menuconfig entry) of a symbol.
type KDef struct {
	File string // relative to the tree
	Line int
	Type string // bool, tristate, string, int, hex ("" if unknown)
	// Deps are the dependency expressions that all must hold: the
	// entry's own "depends on" lines and those of the enclosing menus,
	// choices and if blocks.
	Deps []Expr
	// Prompts are the conditions of the entry's prompts (an always-shown
	// prompt has a nil condition). No prompt means the user cannot set
	// the symbol: only a select or a default can.
	Prompts []Expr
	// InChoice is set for members of a choice block.
	InChoice bool
}

// KSelect is a "select" or "imply" of a symbol by another.
type KSelect struct {
	By   string
	If   Expr // nil: unconditional
	Kind string
}

// ReadKconfig parses the Kconfig files of the kernel tree in dir for
// x86_64, starting at the top Kconfig (or arch/x86/Kconfig in trees that
// have no top one) and following source statements.
func ReadKconfig(dir string) (*Kconfig, error) {
	p := &kparser{dir: dir, k: &Kconfig{Syms: map[string]*KSymbol{}}, seen: map[string]bool{}}
	root := "Kconfig"
	if _, err := os.Stat(filepath.Join(dir, root)); err != nil {
		root = "arch/x86/Kconfig"
	}
	if err := p.file(root, nil, 0); err != nil {
		return nil, fmt.Errorf("kconfig of %s: %w", dir, err)
	}
	return p.k, nil
}

func (k *Kconfig) sym(name string) *KSymbol {
	s := k.Syms[name]
	if s == nil {
		s = &KSymbol{Name: name}
		k.Syms[name] = s
	}
	return s
}

// Defined reports whether the tree defines sym.
func (k *Kconfig) Defined(sym string) bool {
	s := k.Syms[sym]
	return s != nil && len(s.Defs) > 0
}

type kframe struct {
	kind  string // menu, if, choice
	conds []Expr
}

type kparser struct {
	dir  string
	k    *Kconfig
	seen map[string]bool
}

var srcVar = strings.NewReplacer(
	"$(SRCARCH)", "x86", "$SRCARCH", "x86",
	"$(ARCH)", "x86", "$ARCH", "x86",
	"$(HEADER_ARCH)", "x86", "$(srctree)/", "", "$srctree/", "",
	"$(KCONFIG_EXT_PREFIX)", "",
)

// file parses one Kconfig file with the enclosing frames stack.
func (p *kparser) file(rel string, stack []*kframe, depth int) error {
	if depth > 64 {
		return fmt.Errorf("%s: source nesting too deep", rel)
	}
	data, err := os.ReadFile(filepath.Join(p.dir, rel))
	if err != nil {
		return nil // optional sources, and arch directories we do not have
	}
	// The same file may be sourced twice (under different conditions);
	// parsing it again would only duplicate definitions.
	key := rel + fmt.Sprint(len(stack))
	if p.seen[key] {
		return nil
	}
	p.seen[key] = true

	base := len(stack)
	var cur *KDef // entry whose attributes we are reading
	var curSym string
	var curFrame *kframe // menu or choice whose attributes we are reading
	helpIndent := -2     // -2: not in help; -1: in help, indent not known yet
	lines := logicalLines(data)
	for _, ln := range lines {
		text := ln.text
		if helpIndent != -2 {
			if strings.TrimSpace(text) == "" {
				continue
			}
			ind := indent(text)
			switch {
			case ind == 0:
				// A line at column 0 ends the help text, even an empty
				// one ("help" followed directly by the next config, as
				// in 3.14's drivers/video/Kconfig).
			case helpIndent == -1:
				helpIndent = ind
				continue
			case ind >= helpIndent:
				continue
			}
			helpIndent = -2
		}
		t := strings.TrimSpace(stripComment(text))
		if t == "" {
			continue
		}
		kw, rest := word(t)
		switch kw {
		case "config", "menuconfig":
			curSym = strings.TrimSpace(rest)
			cur = &KDef{File: rel, Line: ln.n}
			for _, f := range stack {
				cur.Deps = append(cur.Deps, f.conds...)
				if f.kind == "choice" {
					cur.InChoice = true
				}
			}
			s := p.k.sym(curSym)
			s.Defs = append(s.Defs, cur)
			curFrame = nil
		case "choice":
			f := &kframe{kind: "choice"}
			stack = append(stack, f)
			cur, curFrame = nil, f
		case "menu":
			f := &kframe{kind: "menu"}
			stack = append(stack, f)
			cur, curFrame = nil, f
		case "if":
			e := parseOrOpaque(rest)
			stack = append(stack, &kframe{kind: "if", conds: []Expr{e}})
			cur, curFrame = nil, nil
		case "endchoice", "endmenu", "endif":
			if len(stack) <= base {
				return fmt.Errorf("%s:%d: %s without its opening", rel, ln.n, kw)
			}
			stack = stack[:len(stack)-1]
			cur, curFrame = nil, nil
		case "source", "rsource", "osource", "orsource":
			path := strings.Trim(strings.TrimSpace(rest), `"`)
			path = srcVar.Replace(path)
			if kw == "rsource" || kw == "orsource" {
				path = filepath.Join(filepath.Dir(rel), path)
			}
			if strings.Contains(path, "$") {
				continue
			}
			matches := []string{path}
			if strings.ContainsAny(path, "*?[") {
				matches, _ = filepath.Glob(filepath.Join(p.dir, path))
				for i := range matches {
					matches[i], _ = filepath.Rel(p.dir, matches[i])
				}
			}
			for _, m := range matches {
				if err := p.file(m, stack, depth+1); err != nil {
					return err
				}
			}
			cur, curFrame = nil, nil
		case "comment", "mainmenu":
			cur, curFrame = nil, &kframe{} // its depends on go nowhere
		case "depends", "visible":
			_, e := word(rest) // "on" / "if"
			x := parseOrOpaque(e)
			switch {
			case cur != nil:
				cur.Deps = append(cur.Deps, x)
			case curFrame != nil:
				curFrame.conds = append(curFrame.conds, x)
			}
		case "bool", "boolean", "tristate", "string", "int", "hex", "prompt", "def_bool", "def_tristate":
			if cur == nil {
				continue
			}
			switch kw {
			case "boolean", "def_bool":
				cur.Type = "bool"
			case "def_tristate":
				cur.Type = "tristate"
			case "prompt":
			default:
				cur.Type = kw
			}
			if kw == "def_bool" || kw == "def_tristate" {
				continue
			}
			if prompt, cond, ok := promptOf(rest); ok {
				_ = prompt
				var c Expr
				if cond != "" {
					c = parseOrOpaque(cond)
				}
				cur.Prompts = append(cur.Prompts, c)
			}
		case "select", "imply":
			if cur == nil {
				continue
			}
			target, cond := rest, ""
			if i := strings.Index(rest, " if "); i >= 0 {
				target, cond = rest[:i], rest[i+4:]
			}
			var c Expr
			if cond != "" {
				c = parseOrOpaque(cond)
			}
			t := p.k.sym(strings.TrimSpace(target))
			t.SelectedBy = append(t.SelectedBy, KSelect{By: curSym, If: c, Kind: kw})
		case "help", "---help---":
			helpIndent = -1
		default:
			// default, range, option, modules, optional, transitional,
			// macro definitions (X := ...) and anything newer: not needed
			// to explain dependencies.
		}
	}
	return nil
}

// parseOrOpaque parses s, keeping what it cannot parse as an opaque
// expression: Kconfig grows syntax over the years, and one unreadable line
// must not hide the rest of the tree.
func parseOrOpaque(s string) Expr {
	e, err := ParseExpr(s)
	if err != nil {
		return exprOpaque{strings.TrimSpace(s)}
	}
	return e
}

type kline struct {
	n    int
	text string
}

// logicalLines splits data into lines, joining backslash continuations.
func logicalLines(data []byte) []kline {
	var out []kline
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var acc strings.Builder
	start := 0
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if acc.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(l, "\\") {
			acc.WriteString(strings.TrimSuffix(l, "\\"))
			acc.WriteByte(' ')
			continue
		}
		acc.WriteString(l)
		out = append(out, kline{start, acc.String()})
		acc.Reset()
	}
	if acc.Len() > 0 {
		out = append(out, kline{start, acc.String()})
	}
	return out
}

func indent(s string) int {
	n := 0
	for _, r := range s {
		switch r {
		case ' ':
			n++
		case '\t':
			n = (n/8 + 1) * 8
		default:
			return n
		}
	}
	return n
}

// stripComment drops a # comment that is not inside quotes.
func stripComment(s string) string {
	inq := rune(0)
	for i, r := range s {
		switch {
		case inq != 0 && r == inq:
			inq = 0
		case inq == 0 && (r == '"' || r == '\''):
			inq = r
		case inq == 0 && r == '#':
			return s[:i]
		}
	}
	return s
}

func word(s string) (string, string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

var promptRe = regexp.MustCompile(`^("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*(?:if\s+(.*))?$`)

// promptOf splits `"text" if cond` into its parts; ok is false when there
// is no prompt text.
func promptOf(s string) (prompt, cond string, ok bool) {
	m := promptRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", "", false
	}
	return m[1], strings.TrimSpace(m[2]), true
}
