package kconfigs

import (
	"fmt"
	"strings"
)

// Problem is a wanted setting that did not survive the config step.
type Problem struct {
	Setting
	// Got is the value the symbol ended up with ("n" if unset).
	Got string
	// Missing is set when the tree does not define the symbol at all.
	Missing bool
	// Reason explains the outcome: the unmet dependency, the missing
	// select, or that the symbol does not exist in this version.
	Reason string
}

// String renders the problem on one line, e.g.
// "CONFIG_VIRTIO_NET=y (qemu-x86_64) is not set: unmet dependency PCI [PCI=n] (drivers/net/Kconfig:400)".
func (p Problem) String() string {
	got := "is not set"
	if p.Got != "n" {
		got = "became " + p.Got
	}
	s := fmt.Sprintf("%s (%s) %s: %s", p.Setting, p.Source, got, p.Reason)
	if p.Optional {
		s += " [optional]"
	}
	return s
}

// satisfied reports whether the final value got honours the wanted value.
func satisfied(want, got string) bool {
	switch want {
	case "m":
		return got == "m" || got == "y"
	case "n":
		return got == "n" || got == ""
	}
	return strings.Trim(want, `"`) == strings.Trim(got, `"`)
}

// Check compares the final config with the wanted settings and returns the
// settings that did not survive, each with its reason. k may be nil; it is
// then read from srcDir when there is something to explain.
func Check(srcDir string, k *Kconfig, final *Config, wanted []Setting) ([]Problem, error) {
	var probs []Problem
	for _, s := range wanted {
		got := final.Value(s.Symbol)
		if satisfied(s.Value, got) || s.ModuleOK && s.Value == "y" && got == "m" {
			continue
		}
		if k == nil {
			var err error
			if k, err = ReadKconfig(srcDir); err != nil {
				return nil, err
			}
		}
		p := Problem{Setting: s, Got: got}
		p.Missing, p.Reason = k.Explain(s.Symbol, s.Value, final)
		probs = append(probs, p)
	}
	return probs, nil
}

// Failed returns the problems that are not optional.
func Failed(probs []Problem) []Problem {
	var out []Problem
	for _, p := range probs {
		if !p.Optional {
			out = append(out, p)
		}
	}
	return out
}

// Explain says why sym could not take the value want in the final config.
// missing is true when the tree does not define sym.
func (k *Kconfig) Explain(sym, want string, final *Config) (missing bool, reason string) {
	s := k.Syms[sym]
	if s == nil || len(s.Defs) == 0 {
		return true, "does not exist in this version (no config " + sym + " in its Kconfig files)"
	}
	need := 2
	if want == "m" {
		need = 1
	}
	if want == "n" {
		return false, k.explainForced(s, final)
	}
	var unmet []string
	prompt, hasPrompt, choice := false, false, false
	for _, d := range s.Defs {
		var terms []string
		for _, dep := range d.Deps {
			if dep.Eval(final) < need {
				terms = append(terms, "depends on "+describe(dep, final))
			}
		}
		for _, pc := range d.Prompts {
			hasPrompt = true
			if pc != nil && pc.Eval(final) < need {
				terms = append(terms, "prompt only if "+describe(pc, final))
			} else if len(terms) == 0 {
				prompt = true
			}
		}
		choice = choice || d.InChoice
		if len(terms) > 0 {
			unmet = append(unmet, fmt.Sprintf("%s (%s:%d)", strings.Join(uniq(terms), ", "), d.File, d.Line))
		}
	}
	if !hasPrompt {
		msg := "has no prompt: it is only set when another option selects it, and nothing selects it"
		if sel := k.selectors(s, final); sel != "" {
			msg = "has no prompt: it is only set when another option selects it; none of " + sel + " does"
		}
		if len(unmet) == len(s.Defs) {
			msg += "; and unmet dependency " + strings.Join(unmet, "; ")
		}
		return false, msg
	}
	if len(unmet) == len(s.Defs) {
		return false, "unmet dependency " + strings.Join(unmet, "; ")
	}
	if want == "y" && final.Value(sym) == "m" {
		return false, "limited to m by a dependency that is m"
	}
	if !prompt {
		return false, "its prompt is hidden and nothing selects it"
	}
	if choice {
		return false, "another option of its choice was chosen (a choice takes one member; set the others to n)"
	}
	return false, "olddefconfig changed it (a range, default or select decided)"
}

func (k *Kconfig) explainForced(s *KSymbol, final *Config) string {
	var on []string
	for _, sel := range s.SelectedBy {
		if tri(final.Value(sel.By)) > 0 && sel.Kind == "select" && (sel.If == nil || sel.If.Eval(final) > 0) {
			on = append(on, sel.By)
		}
	}
	if len(on) > 0 {
		return "selected by " + strings.Join(uniq(on), ", ")
	}
	return "olddefconfig set it (no prompt, or a default that cannot be turned off)"
}

// selectors lists who could select s, with their values, e.g.
// "XFRM_USER=n, INET_ESP=n".
func (k *Kconfig) selectors(s *KSymbol, final *Config) string {
	var out []string
	for _, sel := range s.SelectedBy {
		if sel.Kind != "select" {
			continue
		}
		out = append(out, sel.By+"="+final.Value(sel.By))
	}
	out = uniq(out)
	if len(out) > 6 {
		out = append(out[:6], fmt.Sprintf("and %d more", len(out)-6))
	}
	return strings.Join(out, ", ")
}

// describe renders an unmet expression with the values of its symbols:
// "PCI && PVPANIC [PCI=n]".
func describe(e Expr, final *Config) string {
	var vals []string
	for _, s := range uniq(e.Symbols()) {
		vals = append(vals, s+"="+final.Value(s))
	}
	if len(vals) == 0 {
		return e.String()
	}
	return e.String() + " [" + strings.Join(vals, " ") + "]"
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
