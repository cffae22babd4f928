package main

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// An alternative is one `update-alternatives --install` of a maintainer script: the generic link
// (/usr/sbin/iptables), the group's name, the path it may point to at a priority, and the slave links
// that follow it.
type alternative struct {
	link, name, path string
	priority         int
	slaves           []slave
}

type slave struct{ link, name, path string }

// parseAlternatives finds the `update-alternatives --install` commands of a postinst. Packages write
// them as literal words, so this reads words and line continuations, not shell: a command with quotes
// or expansions is an error rather than a guess.
func parseAlternatives(script string) ([]alternative, error) {
	var out []alternative
	for n, line := range logicalLines(script) {
		for _, cmd := range commands(line) {
			if path.Base(cmd[0]) != "update-alternatives" {
				continue
			}
			alt, ok, err := parseInstall(cmd[1:])
			if err != nil {
				return nil, fmt.Errorf("postinst line %d: %v", n+1, err)
			}
			if ok {
				out = append(out, alt)
			}
		}
	}
	return out, nil
}

// logicalLines joins backslash-continued lines and drops comments.
func logicalLines(script string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.SplitSeq(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			line = ""
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// commands splits a line's words into simple commands at ; & and |, each without the keywords that
// may come before a command (`then update-alternatives ...`). None is empty.
func commands(line string) [][]string {
	var out [][]string
	var cur []string
	end := func() {
		for len(cur) > 0 && slices.Contains([]string{"then", "else", "do", "{", "(", "!"}, cur[0]) {
			cur = cur[1:]
		}
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
	}
	for _, w := range strings.Fields(line) {
		for {
			k := strings.IndexAny(w, ";&|")
			if k < 0 {
				cur = append(cur, w)
				break
			}
			if k > 0 {
				cur = append(cur, w[:k])
			}
			end()
			if w = strings.TrimLeft(w[k:], ";&|"); w == "" {
				break
			}
		}
	}
	end()
	return out
}

// parseInstall reads the arguments of one update-alternatives call; ok is false when it installs
// nothing (--remove, --set, --auto: they change groups a fresh image does not have yet).
func parseInstall(args []string) (alt alternative, ok bool, err error) {
	for _, a := range args {
		if strings.ContainsAny(a, "\"'`$*?[") {
			return alt, false, fmt.Errorf("update-alternatives argument %q needs a shell to evaluate", a)
		}
	}
	for len(args) > 0 {
		switch opt := args[0]; opt {
		case "--install":
			if ok {
				return alt, false, fmt.Errorf("two --install in one update-alternatives call")
			}
			if len(args) < 5 {
				return alt, false, fmt.Errorf("--install needs <link> <name> <path> <priority>, got %q", args[1:])
			}
			alt.link, alt.name, alt.path = args[1], args[2], args[3]
			if alt.priority, err = strconv.Atoi(args[4]); err != nil {
				return alt, false, fmt.Errorf("--install %s: priority %q is not a number", alt.name, args[4])
			}
			args, ok = args[5:], true
		case "--slave":
			if len(args) < 4 {
				return alt, false, fmt.Errorf("--slave needs <link> <name> <path>, got %q", args[1:])
			}
			alt.slaves = append(alt.slaves, slave{args[1], args[2], args[3]})
			args = args[4:]
		case "--remove", "--remove-all", "--set", "--auto", "--config", "--display", "--query", "--list",
			"--all", "--get-selections", "--set-selections":
			return alt, false, nil
		case "--altdir", "--admindir", "--instdir", "--root":
			return alt, false, fmt.Errorf("update-alternatives %s is not supported", opt)
		case "--log":
			args = args[min(2, len(args)):]
		default:
			if !strings.HasPrefix(opt, "--") {
				if !ok {
					return alt, false, nil // not a call: `command -v update-alternatives` and the like
				}
				return alt, false, fmt.Errorf("unexpected %q after --install %s", opt, alt.name)
			}
			args = args[1:] // --quiet, --force and the like
		}
	}
	if !ok {
		if len(alt.slaves) > 0 {
			return alt, false, fmt.Errorf("--slave without --install")
		}
		return alt, false, nil
	}
	for _, p := range append([]string{alt.link, alt.path}, slavePaths(alt.slaves)...) {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return alt, false, fmt.Errorf("alternative %s: %q is not a clean absolute path", alt.name, p)
		}
	}
	return alt, true, nil
}

func slavePaths(ss []slave) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.link, s.path)
	}
	return out
}

// chooseAlternatives does what update-alternatives does in auto mode: of each group, the highest
// priority wins (the first installed on a tie). The groups come back in the order first installed.
func chooseAlternatives(alts []alternative) ([]alternative, error) {
	var order []string
	best := map[string]alternative{}
	for _, a := range alts {
		b, seen := best[a.name]
		switch {
		case !seen:
			order = append(order, a.name)
			best[a.name] = a
		case b.link != a.link:
			return nil, fmt.Errorf("alternative %s: link %s, and %s elsewhere", a.name, a.link, b.link)
		case a.priority > b.priority:
			best[a.name] = a
		}
	}
	out := make([]alternative, 0, len(order))
	for _, name := range order {
		out = append(out, best[name])
	}
	return out, nil
}
