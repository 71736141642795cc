package tracking

import (
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Machine opens and clicks.
//
// Much of what fetches a pixel or follows a link is not a person: mail
// privacy proxies fetch every image when the message is delivered, and
// security gateways follow every link before the recipient sees it. Such
// hits are stored as email_opened_machine / email_clicked_machine instead
// of email_opened / email_clicked, so count("email_opened", ...) counts
// people unless a rule asks for the machine names. The heuristics, in
// order (the first that holds gives the reason stored in the event's
// machine_reason property):
//
//  1. A HEAD request: browsers and mail clients GET; scanners probe.
//  2. No User-Agent at all.
//  3. A User-Agent of a known scanner, proxy or bot (machineAgents):
//     Microsoft Defender/Safe Links, Proofpoint, Mimecast, Barracuda,
//     Cisco IronPort, Symantec/Broadcom, Trend Micro, Sophos, Forcepoint,
//     Zscaler, Yahoo's and other caching image proxies, link-preview bots
//     and HTTP libraries (curl, python-requests, Go-http-client...).
//  4. Apple Mail Privacy Protection, for opens: it prefetches every image
//     through Apple's proxies with the bare User-Agent "Mozilla/5.0", from
//     Apple's networks (17.0.0.0/8, 2620:149::/32, 2a01:b740::/32). Either
//     is enough.
//  5. Timing: a hit within MachineWindow (10 s by default) of the send's
//     sent_at. No person opens or clicks that fast; proxies that fetch at
//     delivery and scanners do.
//
// Gmail's image proxy ("GoogleImageProxy") fetches the pixel when the
// person opens the message, so it counts as a human open — unless it comes
// within MachineWindow of delivery (rule 5).
//
// A request that reaches the handler through a reverse proxy has the
// proxy's address as RemoteAddr; rule 4's address test then never holds,
// and the User-Agent test still does.

// DefaultMachineWindow is how soon after sending a hit counts as a machine.
const DefaultMachineWindow = 10 * time.Second

// machineAgents are User-Agent substrings (matched case-insensitively) of
// scanners, proxies and bots.
var machineAgents = [...]string{
	// Security gateways and link scanners.
	"safelinks", "microsoft defender", "msoffice-safelinks", "office 365 atp", "bingpreview",
	"proofpoint", "ppops-", "urldefense",
	"mimecast",
	"barracuda",
	"ironport", "cisco",
	"symantec", "messagelabs", "broadcom",
	"trend micro", "trendmicro",
	"sophos",
	"forcepoint", "websense",
	"zscaler",
	"fireeye", "trellix",
	"checkpoint", "check point",
	"fortiguard", "fortinet",
	"bitdefender", "kaspersky", "avast",
	// Caching image proxies that fetch at delivery.
	"yahoomailproxy", "yahoo! slurp",
	// Link previews and crawlers.
	"slackbot", "facebookexternalhit", "linkedinbot", "twitterbot", "whatsapp", "telegrambot",
	"discordbot", "skypeuripreview", "googlebot", "bot/", "bot;", "spider", "crawler", "headlesschrome", "phantomjs",
	// HTTP libraries.
	"curl/", "wget/", "python-requests", "python-urllib", "go-http-client", "java/", "okhttp", "libwww-perl", "apache-httpclient", "axios/", "node-fetch",
}

// appleNets are Apple's networks, where Mail Privacy Protection fetches
// from.
var appleNets = [...]netip.Prefix{
	netip.MustParsePrefix("17.0.0.0/8"),
	netip.MustParsePrefix("2620:149::/32"),
	netip.MustParsePrefix("2a01:b740::/32"),
}

func fromApple(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range appleNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Machine reports whether a hit on an open (k == Open) or click link is a
// machine's, and why. sentAt is the send's sent_at (zero if unknown);
// window is MachineWindow (DefaultMachineWindow if 0).
func Machine(k Kind, r *http.Request, sentAt, now time.Time, window time.Duration) (bool, string) {
	if window <= 0 {
		window = DefaultMachineWindow
	}
	if r.Method == http.MethodHead {
		return true, "HEAD request"
	}
	ua := strings.TrimSpace(r.UserAgent())
	if ua == "" {
		return true, "no user agent"
	}
	low := strings.ToLower(ua)
	for _, a := range machineAgents {
		if strings.Contains(low, a) {
			return true, "user agent: " + a
		}
	}
	if k == Open {
		if ua == "Mozilla/5.0" {
			return true, "Apple Mail Privacy Protection (user agent)"
		}
		if fromApple(r.RemoteAddr) {
			return true, "Apple Mail Privacy Protection (address)"
		}
	}
	if !sentAt.IsZero() && now.Sub(sentAt) < window {
		return true, "within " + window.String() + " of sending"
	}
	return false, ""
}
