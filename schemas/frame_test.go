package schemas

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The vectors of FRAMES.md, with its spaces and line breaks removed.
var frameVectors = []struct {
	name  string
	frame Frame
	hex   string
}{
	{
		name:  "ping",
		frame: Frame{Kind: KindPing, Meta: []byte(`{"seq":1}`), Body: []byte{}},
		hex:   "00000015 05 00 0000 00000000 00000009 7b22736571223a317d",
	},
	{
		name: "request",
		frame: Frame{
			Kind: KindRequest, ID: 7,
			Meta: []byte(`{"command":"ping","request_id":"r"}`),
			Body: []byte(`{"message":"hi"}`),
		},
		hex: "0000003f 02 00 0000 00000007 00000023 " +
			"7b22636f6d6d616e64223a2270696e67222c22726571756573745f6964223a2272227d " +
			"7b226d657373616765223a226869227d",
	},
	{
		name: "raw result",
		frame: Frame{
			Kind: KindResult, Flags: FlagRaw, ID: 7,
			Meta: []byte{}, Body: []byte{0, 0xff, 'a', 'b'},
		},
		hex: "00000010 03 01 0000 00000007 00000000 00ff6162",
	},
}

func TestFrameVectors(t *testing.T) {
	for _, tc := range frameVectors {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendFrame(nil, &tc.frame)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame(%s) = %x, %v; want %x", tc.name, got, err, want)
			}
			f, err := ReadFrame(bytes.NewReader(want))
			if err != nil {
				t.Fatalf("ReadFrame(%s): %v", tc.name, err)
			}
			if f.Kind != tc.frame.Kind || f.ID != tc.frame.ID || f.Flags != tc.frame.Flags ||
				!bytes.Equal(f.Meta, tc.frame.Meta) || !bytes.Equal(f.Body, tc.frame.Body) {
				t.Fatalf("ReadFrame(%s) = %+v, want %+v", tc.name, f, tc.frame)
			}
		})
	}
}

func TestReadFrameRejects(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"oversize", "04000001 05 00 0000 00000000 00000000", ErrFrameTooLarge},
		{"unknown kind", "0000000c 63 00 0000 00000000 00000000", ErrBadFrame},
		{"meta past end", "0000000c 05 00 0000 00000000 00000005", ErrBadFrame},
		{"short length", "00000004 05 00 0000 00000000 00000000", ErrBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
			_, err := ReadFrame(bytes.NewReader(b))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame(%s) error = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
}
