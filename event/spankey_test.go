package event

import "testing"

func TestSpanKey(t *testing.T) {
	trace := [16]byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	span := [8]byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
	k := NewSpanKey(trace, span)
	const want = "5b8efff798038103d269b633813fc60ceee19b7ec3c1b174"
	if got := k.EventID(); got != want {
		t.Fatalf("EventID = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{want, true},
		{"5B8EFFF798038103D269B633813FC60CEEE19B7EC3C1B174", false}, // not the form EventID writes
		{want[:47], false},
		{want + "0", false},
		{want[:47] + "g", false},
		{"", false},
	} {
		t.Run(tc.id, func(t *testing.T) {
			got, ok := SpanKeyOf(tc.id)
			if ok != tc.ok || ok && got != k {
				t.Fatalf("SpanKeyOf(%q) = %x, %v; want ok=%v", tc.id, got, ok, tc.ok)
			}
		})
	}
}

func BenchmarkSpanKeyOf(b *testing.B) {
	id := NewSpanKey([16]byte{1, 2, 3}, [8]byte{4, 5, 6}).EventID()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := SpanKeyOf(id); !ok {
			b.Fatal("not a key")
		}
	}
}
