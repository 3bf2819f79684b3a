package kconfigs

// Merge applies fragments to a copy of base the way merge_config.sh does:
// each setting overrides what base or an earlier fragment said. It returns
// the merged config and the changes it made to base (each naming the
// fragment responsible). No version gating: use For and MergeSettings for
// that.
func Merge(base *Config, frags ...*Fragment) (*Config, []Change) {
	keep, _ := For(Version{}, frags...)
	return MergeSettings(base, keep)
}

// MergeSettings applies settings to a copy of base and returns it with the
// changes made, in settings order.
func MergeSettings(base *Config, settings []Setting) (*Config, []Change) {
	out := base.Clone()
	var changes []Change
	for _, s := range settings {
		old, had := base.Lookup(s.Symbol)
		if s.ModuleOK && s.Value == "y" && old == "m" {
			continue // the agent loads it: the base's module stays
		}
		out.Set(s.Symbol, s.Value)
		if had && old == s.Value || !had && s.Value == "n" {
			continue
		}
		ch := Change{Symbol: s.Symbol, New: s.Value, Source: s.Source}
		if had {
			ch.Old = old
		}
		changes = append(changes, ch)
	}
	return out, changes
}
