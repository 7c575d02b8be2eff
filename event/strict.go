package event

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// fastjson checks the structure of a JSON text but lets through what RFC
// 8259 forbids inside its tokens. The checks here close those gaps, so that
// whatever is accepted is stored, served and exported as valid JSON:
//   - checkText: raw control characters in strings, invalid UTF-8, bad
//     escapes, and unpaired surrogate escapes (readers decode them
//     differently, as they do duplicate keys);
//   - Decoder.walk: numbers outside the grammar (.5, 01, +1, NaN, inf),
//     numbers beyond float64 (every number must be finite), and objects with
//     a key twice.

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// checkText checks the bytes of a JSON text that fastjson parsed. Compact
// ASCII JSON, the usual event, costs a word-at-a-time pass and a search for
// backslashes.
func checkText(b []byte) error {
	if !plainASCII(b) {
		if err := checkBytes(b); err != nil {
			return err
		}
	}
	if bytes.IndexByte(b, '\\') >= 0 {
		return checkEscapes(b)
	}
	return nil
}

// plainASCII tells whether every byte of b is in [0x20, 0x7f].
func plainASCII(b []byte) bool {
	// x-0x20 in each byte borrows, setting its high bit, iff the byte is
	// below 0x20 (a borrow only starts at such a byte); x itself has the high
	// bit of a byte from 0x80 up.
	const below = 0x20 * lsb
	n := len(b)
	if n < 32 {
		for _, c := range b {
			if c < 0x20 || c >= 0x80 {
				return false
			}
		}
		return true
	}
	// No early exit and a tail read as the last 32 bytes (again, in part):
	// branches that do not depend on the bytes or on how many are left.
	var acc uint64
	word := func(b []byte) uint64 {
		w0, w1 := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		w2, w3 := binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:32])
		return (w0 - below) | w0 | (w1 - below) | w1 | (w2 - below) | w2 | (w3 - below) | w3
	}
	for r := b; len(r) > 32; r = r[32:] {
		acc |= word(r)
	}
	acc |= word(b[n-32:])
	return acc&msb == 0
}

// checkBytes rejects invalid UTF-8 and control characters inside strings.
func checkBytes(b []byte) error {
	if !utf8.Valid(b) {
		return invalid("malformed JSON: invalid UTF-8 at byte %d", invalidUTF8At(b))
	}
	if !hasControl(b) {
		return nil
	}
	// Outside strings the parser allowed only tab, newline and carriage
	// return; find one inside a string.
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			in = !in
		case c == '\\':
			i++ // only inside strings; checkEscapes checks the escaped byte
		case c < 0x20 && in:
			return invalid("malformed JSON: control character 0x%02x in a string at byte %d (escape it as \\u%04x)", c, i, c)
		}
	}
	return nil
}

// hasControl tells whether b holds a byte below 0x20.
func hasControl(b []byte) bool {
	var acc uint64
	for ; len(b) >= 8; b = b[8:] {
		w := binary.LittleEndian.Uint64(b)
		acc |= (w - 0x20*lsb) &^ w // as in plainASCII, but a high byte sets nothing
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return acc&msb != 0
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// checkEscapes checks every escape sequence of b. A backslash appears only
// inside strings, so escapes are read from left to right.
func checkEscapes(b []byte) error {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			return nil
		}
		i += j + 1
		if i >= len(b) {
			return invalid("malformed JSON: bad escape at byte %d", i-1)
		}
		switch b[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
			continue
		case 'u':
		default:
			return badEscape(b[i-1:i+1], i-1)
		}
		r, ok := hex4(b[i+1:])
		if !ok {
			return badEscape(b[i-1:min(i+5, len(b))], i-1)
		}
		i += 5
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return unpaired(r, i-6)
		case r >= 0xd800 && r <= 0xdbff:
			if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
				return unpaired(r, i-6)
			}
			if lo, ok := hex4(b[i+2:]); !ok || lo < 0xdc00 || lo > 0xdfff {
				return unpaired(r, i-6)
			}
			i += 6
		}
	}
}

func badEscape(esc []byte, at int) error {
	for _, c := range esc {
		if c < 0x20 || c >= 0x7f {
			return invalid("malformed JSON: bad escape %q at byte %d", esc, at)
		}
	}
	return invalid("malformed JSON: bad escape %s at byte %d", esc, at)
}

// unpaired rejects what RFC 8259 allows but leaves to the reader: JSON
// parsers replace an unpaired surrogate, keep it or fail.
func unpaired(r rune, at int) error {
	return invalid("unpaired surrogate \\u%04x at byte %d (readers decode it differently)", r, at)
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// readNumber checks s against RFC 8259's number grammar and, with value
// set, reads it into n: exactly for an integer of at most 18 digits, by
// Clinger's fast path when the digits and the power of ten are few (exact:
// both are float64s, and one operation rounds once), else by ParseFloat.
// Without value only a number that may pass MaxFloat64 is parsed.
func readNumber(s []byte, n *num, value bool) *walkError {
	i, neg := 0, false
	if len(s) > 0 && s[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64 // wraps past 19 digits, and is then not used
	start := i
	for ; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			break
		}
		mant = mant*10 + uint64(c)
	}
	intDigits := i - start
	if intDigits == 0 || intDigits > 1 && s[start] == '0' {
		return &walkError{number: s}
	}
	if i == len(s) && intDigits <= 18 { // the usual integer
		if value {
			n.i, n.isInt = int64(mant), true
			n.f = float64(mant)
			if neg {
				n.i, n.f = -n.i, -n.f
			}
		}
		return nil
	}
	digits, exp10 := intDigits, 0
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && isDigit(s[i]) {
			mant = mant*10 + uint64(s[i]-'0')
			i++
		}
		if i == j {
			return &walkError{number: s}
		}
		digits += i - j
		exp10 = j - i
	}
	exp := false
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		j, e := i, 0
		for i < len(s) && isDigit(s[i]) {
			if e < 1e6 {
				e = e*10 + int(s[i]-'0')
			}
			i++
		}
		if i == j {
			return &walkError{number: s}
		}
		if eneg {
			e = -e
		}
		exp10 += e
		exp = true
	}
	if i != len(s) {
		return &walkError{number: s}
	}
	if !value && !exp && intDigits <= 308 {
		return nil // fits: only an exponent or more than 308 digits pass MaxFloat64
	}
	if digits <= 15 && exp10 >= -22 && exp10 <= 22 {
		f := float64(mant)
		if exp10 < 0 {
			f /= pow10[-exp10]
		} else {
			f *= pow10[exp10]
		}
		if neg {
			f = -f
		}
		n.f = f
		return nil
	}
	// ParseFloat fails only past MaxFloat64 (an underflow gives 0, no error).
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(s), len(s)), 64)
	if err != nil {
		return &walkError{number: s, outOfRange: true}
	}
	n.f = f
	return nil
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// walkError is a number or a duplicate key that walk rejects; path is
// collected on the way out, innermost first, so that a valid event builds
// none.
type walkError struct {
	number     []byte // the number as it came
	outOfRange bool
	dup        bool
	key        string   // the key given twice
	path       []string // keys and indices ("[i]"), innermost first
	field      string   // the dotted path of the field walked, before path
}

// under sets the dotted path of the field w was found in.
func (w *walkError) under(field string) *walkError {
	w.field = field
	return w
}

// in adds the key or index ("[i]") under which w was found.
func (w *walkError) in(seg string) *walkError {
	if w == nil {
		return nil
	}
	w.path = append(w.path, seg)
	return w
}

func (w *walkError) err() error {
	var p strings.Builder
	p.WriteString(w.field)
	for i := len(w.path) - 1; i >= 0; i-- {
		seg := w.path[i]
		if strings.HasPrefix(seg, "[") {
			p.WriteString(seg)
			continue
		}
		if p.Len() > 0 {
			p.WriteByte('.')
		}
		if plainKey(seg) {
			p.WriteString(seg)
		} else {
			p.WriteString(strconv.Quote(seg))
		}
	}
	where := p.String()
	switch {
	case w.dup && where == "":
		return invalid("duplicate key %s", strconv.Quote(shorten([]byte(w.key))))
	case w.dup:
		return invalid("duplicate key %s in %s", strconv.Quote(shorten([]byte(w.key))), where)
	case w.outOfRange:
		return invalid("number %s at %s is out of range (every number must be finite)", shorten(w.number), where)
	}
	return invalid("malformed JSON: %s at %s is not a JSON number", strconv.Quote(shorten(w.number)), where)
}

// plainKey tells whether k reads unambiguously in a dotted path.
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c == '_' || c == '-' || c == ':' || isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z')) {
			return false
		}
	}
	return k != ""
}

// shorten cuts what goes into an error message, at a rune's start.
func shorten(s []byte) string {
	const max = 64
	if len(s) <= max {
		return string(s)
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return string(s[:n]) + "…"
}

// walk checks the numbers and object keys of v and everything below it.
func (d *Decoder) walk(v *fastjson.Value) *walkError {
	switch v.Type() {
	case fastjson.TypeNumber:
		var n num
		return d.readNumber(v, &n, false)
	case fastjson.TypeArray:
		items, _ := v.Array()
		for i, it := range items {
			if compound(it) {
				if w := d.walk(it); w != nil {
					return w.in("[" + strconv.Itoa(i) + "]")
				}
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		start := d.nkeys
		var w *walkError
		o.Visit(func(k []byte, v *fastjson.Value) {
			if w == nil {
				d.key(k)
				w = d.member(k, v)
			}
		})
		return d.endObject(o, start, w)
	}
	return nil
}

// compound tells whether walk has anything to check in v.
func compound(v *fastjson.Value) bool {
	t := v.Type()
	return t == fastjson.TypeNumber || t == fastjson.TypeArray || t == fastjson.TypeObject
}

// member walks the value v of an object's member named k.
func (d *Decoder) member(k []byte, v *fastjson.Value) *walkError {
	var w *walkError
	switch v.Type() {
	case fastjson.TypeNumber:
		var n num
		w = d.readNumber(v, &n, false)
	case fastjson.TypeArray, fastjson.TypeObject:
		w = d.walk(v)
	default:
		return nil
	}
	if w != nil {
		w.in(shorten(k))
	}
	return w
}

// readNumber checks a number value as it came, reading it into n with
// value set.
func (d *Decoder) readNumber(v *fastjson.Value, n *num, value bool) *walkError {
	b := v.MarshalTo(d.scratch[:0])
	if cap(b) > cap(d.scratch) {
		d.scratch = b[:0]
	}
	if w := readNumber(b, n, value); w != nil {
		w.number = bytes.Clone(w.number)
		return w
	}
	return nil
}

// key notes the key of a member of the object being walked. Keys are kept
// as hashes, compared exactly only when two match; a slice of numbers
// written by index costs no write barrier.
func (d *Decoder) key(k []byte) {
	if d.nkeys == len(d.keys) {
		d.keys = append(d.keys, make([]uint64, len(d.keys)+32)...)
	}
	d.keys[d.nkeys] = keyHash(k)
	d.nkeys++
}

// keyHash hashes a key: its length and first and last eight bytes when it
// is short, every byte when not. A collision costs only an exact comparison.
func keyHash(k []byte) uint64 {
	const m1, m2 = 0x9e3779b97f4a7c15, 0xff51afd7ed558ccd
	n := len(k)
	h := uint64(n) * m1
	switch {
	case n > 16:
		for r := k; len(r) > 8; r = r[8:] {
			h = bits.RotateLeft64(h^binary.LittleEndian.Uint64(r), 27) * m1
		}
		h ^= binary.LittleEndian.Uint64(k[n-8:]) // the last eight, overlapping
	case n >= 8:
		h ^= binary.LittleEndian.Uint64(k)
		h = bits.RotateLeft64(h, 27)*m1 ^ binary.LittleEndian.Uint64(k[n-8:])
	case n >= 4:
		h ^= uint64(binary.LittleEndian.Uint32(k)) | uint64(binary.LittleEndian.Uint32(k[n-4:]))<<32
	case n > 0:
		h ^= uint64(k[0]) | uint64(k[n/2])<<8 | uint64(k[n-1])<<16
	}
	h *= m2
	return h ^ h>>32
}

func duplicateKey(k []byte) *walkError { return &walkError{dup: true, key: string(k)} }

// endObject finishes walking o, whose keys were noted from start on: w is
// the first error found in its values, else a key it holds twice.
func (d *Decoder) endObject(o *fastjson.Object, start int, w *walkError) *walkError {
	if w != nil || d.nkeys-start < 2 {
		d.nkeys = start
		return w
	}
	return d.repeatedKey(o, start)
}

func (d *Decoder) repeatedKey(o *fastjson.Object, start int) *walkError {
	keys := d.keys[start:d.nkeys]
	d.nkeys = start
	if !repeats(keys) {
		return nil
	}
	// Two keys hash alike: compare the keys themselves.
	seen := make(map[string]bool, o.Len())
	var dup string
	found := false
	o.Visit(func(k []byte, _ *fastjson.Value) {
		if seen[string(k)] && !found {
			dup, found = string(k), true
		}
		seen[string(k)] = true
	})
	if !found {
		return nil
	}
	return &walkError{dup: true, key: dup}
}

// repeats tells whether keys holds a value twice. It sorts keys when they
// are many.
func repeats(keys []uint64) bool {
	if len(keys) <= 16 {
		for i := 1; i < len(keys); i++ {
			for _, k := range keys[:i] {
				if k == keys[i] {
					return true
				}
			}
		}
		return false
	}
	slices.Sort(keys)
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return true
		}
	}
	return false
}
