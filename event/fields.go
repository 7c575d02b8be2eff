package event

import (
	"strconv"
	"strings"
)

// topLevelFields are the keys an event may have (SPEC §4.2): the input
// fields, then the stored event's (AppendJSON), so that an export imports
// back. The parser reads the input fields and ignores the others, whose
// values it derives itself.
var topLevelFields = [...]string{
	"event_name", "experiment_id", "event_id", "timestamp", "measurements", "metadata",
	"latency_ms", "cost_usd", "success", "scores",
	"experiment_name", "condition", "tags", "tokens", "session_id", "user_id", "sample_id", "cohort",
	"model", "provider", "epoch", "batch", "loss", "accuracy", "learning_rate", "gradient_norm",
	"checkpoint_path", "sample_weight",
}

// ignoredField tells whether k is a top-level field the parser does not
// read (collectTop reads the others).
func ignoredField(k string) bool {
	switch k {
	case "experiment_name", "condition", "tags", "tokens", "session_id", "user_id", "sample_id", "cohort",
		"model", "provider", "epoch", "batch", "loss", "accuracy", "learning_rate", "gradient_norm",
		"checkpoint_path", "sample_weight":
		return true
	}
	return false
}

// unknownField rejects a top-level key that is no field, naming the field
// it was probably meant to be when one is close.
func unknownField(k []byte) error {
	msg := "unknown field " + strconv.Quote(shorten(k))
	if s := suggest(string(k)); s != "" {
		msg += " (did you mean " + strconv.Quote(s) + "?)"
	}
	return invalid("%s", msg)
}

// suggest returns the top-level field k was probably meant to be, or "".
func suggest(k string) string { return Closest(k, topLevelFields[:]) }

// Closest returns the name of known closest to k by edit distance (case and
// '-' versus '_' aside), or the name k begins, when it is close enough to be
// a slip rather than another name; else "". Known names are lower case.
func Closest(k string, known []string) string {
	if len(k) > 64 {
		return ""
	}
	key := strings.ReplaceAll(strings.ToLower(k), "-", "_")
	best, bestD := "", len(key)+1
	for _, f := range known {
		if len(f) > 64 {
			continue
		}
		d := distance(key, f)
		// Up to one edit in four characters: "sucess", "latncy_ms" and
		// "measurments" are slips; "cost" is not "cohort".
		if limit := max(1, min(len(key), len(f))/4); d <= limit && d < bestD {
			best, bestD = f, d
		}
	}
	if best != "" {
		return best
	}
	for _, f := range known {
		// "latency" for "latency_ms", "cost" for "cost_usd"
		if len(key) >= 4 && strings.HasPrefix(f, key+"_") {
			return f
		}
	}
	return ""
}

// distance is the optimal string alignment distance of a and b: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func distance(a, b string) int {
	// Rows i-2, i-1 and i of the table; fields are short.
	var buf [3][65]int
	prev2, prev, cur := buf[0][:len(b)+1], buf[1][:len(b)+1], buf[2][:len(b)+1]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
