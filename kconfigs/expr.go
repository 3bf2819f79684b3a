package kconfigs

import (
	"fmt"
	"strings"
)

// Expr is a Kconfig dependency expression.
type Expr interface {
	// Eval returns the expression's tristate value (0 n, 1 m, 2 y) under
	// the symbol values of c.
	Eval(c *Config) int
	// String renders the expression in Kconfig syntax.
	String() string
	// Symbols lists the symbols the expression mentions.
	Symbols() []string
}

type (
	exprSym    struct{ name string } // a symbol or a constant (y, m, n, "str")
	exprOpaque struct{ text string } // an expression we could not parse
	exprNot    struct{ x Expr }
	exprAnd    struct{ a, b Expr }
	exprOr     struct{ a, b Expr }
	exprCmp    struct {
		op   string
		a, b exprSym
	}
)

func tri(v string) int {
	switch v {
	case "y":
		return 2
	case "m":
		return 1
	}
	return 0
}

func (e exprSym) isConst() bool {
	return e.name == "y" || e.name == "m" || e.name == "n" || strings.HasPrefix(e.name, `"`) || strings.HasPrefix(e.name, "$(") || strings.HasPrefix(e.name, `'`) || isNumber(e.name)
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r >= '0' && r <= '9' || i == 0 && r == '-' || strings.HasPrefix(s, "0x") && (r == 'x' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F')) {
			return false
		}
	}
	return true
}

func (e exprSym) value(c *Config) string {
	if strings.HasPrefix(e.name, "$(") {
		return "y" // unknown: assume the macro holds
	}
	if e.isConst() {
		return strings.Trim(e.name, `"'`)
	}
	return strings.Trim(c.Value(e.name), `"`)
}

func (e exprSym) Eval(c *Config) int { return tri(e.value(c)) }
func (e exprSym) String() string     { return e.name }
func (e exprSym) Symbols() []string {
	if e.isConst() {
		return nil
	}
	return []string{e.name}
}

// Eval assumes an expression kbisect cannot read holds.
func (e exprOpaque) Eval(c *Config) int { return 2 }
func (e exprOpaque) String() string     { return e.text }
func (e exprOpaque) Symbols() []string  { return nil }

func (e exprNot) Eval(c *Config) int { return 2 - e.x.Eval(c) }
func (e exprNot) String() string {
	switch e.x.(type) {
	case exprSym:
		return "!" + e.x.String()
	}
	return "!(" + e.x.String() + ")"
}
func (e exprNot) Symbols() []string { return e.x.Symbols() }

func (e exprAnd) Eval(c *Config) int { return min(e.a.Eval(c), e.b.Eval(c)) }
func (e exprAnd) String() string     { return paren(e.a, true) + " && " + paren(e.b, true) }
func (e exprAnd) Symbols() []string  { return append(e.a.Symbols(), e.b.Symbols()...) }

func (e exprOr) Eval(c *Config) int { return max(e.a.Eval(c), e.b.Eval(c)) }
func (e exprOr) String() string     { return paren(e.a, false) + " || " + paren(e.b, false) }
func (e exprOr) Symbols() []string  { return append(e.a.Symbols(), e.b.Symbols()...) }

func paren(e Expr, inAnd bool) string {
	if _, ok := e.(exprOr); ok && inAnd {
		return "(" + e.String() + ")"
	}
	return e.String()
}

func (e exprCmp) Eval(c *Config) int {
	a, b := e.a.value(c), e.b.value(c)
	var r bool
	switch e.op {
	case "=":
		r = a == b
	case "!=":
		r = a != b
	default:
		var x, y int
		if _, err := fmt.Sscan(a, &x); err != nil {
			x = tri(a)
		}
		if _, err := fmt.Sscan(b, &y); err != nil {
			y = tri(b)
		}
		switch e.op {
		case "<":
			r = x < y
		case "<=":
			r = x <= y
		case ">":
			r = x > y
		case ">=":
			r = x >= y
		}
	}
	if r {
		return 2
	}
	return 0
}
func (e exprCmp) String() string    { return e.a.String() + e.op + e.b.String() }
func (e exprCmp) Symbols() []string { return append(e.a.Symbols(), e.b.Symbols()...) }

// Conjuncts splits e at its top-level && operators.
func Conjuncts(e Expr) []Expr {
	if a, ok := e.(exprAnd); ok {
		return append(Conjuncts(a.a), Conjuncts(a.b)...)
	}
	return []Expr{e}
}

// ParseExpr parses a Kconfig expression such as `NET && (PCI || !X86_32)`.
func ParseExpr(s string) (Expr, error) {
	toks, err := lexExpr(s)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", s, err)
	}
	p := &exprParser{toks: toks}
	e, err := p.or()
	if err == nil && p.i < len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", s, err)
	}
	return e, nil
}

func lexExpr(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||") || strings.HasPrefix(s[i:], "!=") ||
			strings.HasPrefix(s[i:], "<=") || strings.HasPrefix(s[i:], ">="):
			toks = append(toks, s[i:i+2])
			i += 2
		case strings.ContainsRune("!()=<>", rune(c)):
			toks = append(toks, s[i:i+1])
			i++
		case strings.HasPrefix(s[i:], "$("):
			// A preprocessor macro such as $(cc-option,...): one opaque
			// token whose value only conf knows.
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == '(' {
					depth++
				} else if s[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated macro")
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t!()=<>&|\"'", rune(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q", s[i:])
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

type exprParser struct {
	toks []string
	i    int
}

func (p *exprParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *exprParser) or() (Expr, error) {
	a, err := p.and()
	for err == nil && p.peek() == "||" {
		p.i++
		var b Expr
		if b, err = p.and(); err == nil {
			a = exprOr{a, b}
		}
	}
	return a, err
}

func (p *exprParser) and() (Expr, error) {
	a, err := p.unary()
	for err == nil && p.peek() == "&&" {
		p.i++
		var b Expr
		if b, err = p.unary(); err == nil {
			a = exprAnd{a, b}
		}
	}
	return a, err
}

func (p *exprParser) unary() (Expr, error) {
	switch t := p.peek(); t {
	case "!":
		p.i++
		x, err := p.unary()
		return exprNot{x}, err
	case "(":
		p.i++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		p.i++
		return x, nil
	case "", ")", "&&", "||", "=", "!=", "<", ">", "<=", ">=":
		return nil, fmt.Errorf("expected a symbol, got %q", t)
	default:
		p.i++
		a := exprSym{t}
		switch op := p.peek(); op {
		case "=", "!=", "<", ">", "<=", ">=":
			p.i++
			b := p.peek()
			if b == "" || strings.ContainsAny(b, "()!&|=<>") {
				return nil, fmt.Errorf("expected a symbol after %s", op)
			}
			p.i++
			return exprCmp{op, a, exprSym{b}}, nil
		}
		return a, nil
	}
}
