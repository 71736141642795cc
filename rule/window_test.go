package rule

import (
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	const d = 24 * time.Hour
	tests := []struct {
		in      string
		want    Window
		canon   string
		wantErr string
	}{
		{in: "30m", want: Window{Dur: 30 * time.Minute}, canon: "30m"},
		{in: "90m", want: Window{Dur: 90 * time.Minute}, canon: "90m"},
		{in: "120m", want: Window{Dur: 2 * time.Hour}, canon: "2h"},
		{in: "12h", want: Window{Dur: 12 * time.Hour}, canon: "12h"},
		{in: "48h", want: Window{Dur: 2 * d}, canon: "2d"},
		{in: "14d", want: Window{Dur: 14 * d}, canon: "14d"},
		{in: "014d", want: Window{Dur: 14 * d}, canon: "14d"},
		{in: "8w", want: Window{Dur: 56 * d}, canon: "56d"},
		{in: "1y", want: Window{Dur: 365 * d}, canon: "365d"},
		{in: "365d", want: Window{Dur: 365 * d}, canon: "365d"},
		{in: "100y", want: Window{Dur: 36500 * d}, canon: "36500d"},
		{in: "all", want: Window{All: true}, canon: "all"},
		{in: "enrolment", want: Window{Enrolment: true}, canon: "enrolment"},
		{in: "14x", wantErr: `unknown window "14x": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "", wantErr: `unknown window "": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "d", wantErr: `unknown window "d": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "-1d", wantErr: `unknown window "-1d": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "+1d", wantErr: `unknown window "+1d": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "1.5d", wantErr: `unknown window "1.5d": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: " 14d", wantErr: `unknown window " 14d": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "14D", wantErr: `unknown window "14D": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "All", wantErr: `unknown window "All": use 30m, 12h, 14d, 8w, 1y or all`},
		{in: "0d", wantErr: `window "0d" is empty: use a positive number, like "14d"`},
		{in: "101y", wantErr: `window "101y" is too long: at most 100y`},
		{in: "99999999999999999999999d", wantErr: `window "99999999999999999999999d" is too long: at most 100y`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWindow(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseWindow(%q) = %+v, %v, want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseWindow(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.canon {
				t.Errorf("ParseWindow(%q).String() = %q, want %q", tt.in, s, tt.canon)
			}
			back, err := ParseWindow(got.String())
			if err != nil || back != got {
				t.Errorf("ParseWindow(%q) = %+v, %v, want it to give back %+v", got.String(), back, err, got)
			}
		})
	}
}

func TestWindowSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Time
		wantOK bool
	}{
		{in: "14d", want: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), wantOK: true},
		{in: "30m", want: time.Date(2025, 6, 15, 11, 30, 0, 0, time.UTC), wantOK: true},
		{in: "all"},
		{in: "enrolment"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			w, err := ParseWindow(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := w.Since(now)
			if !got.Equal(tt.want) || ok != tt.wantOK {
				t.Fatalf("Since = %v, %v, want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
