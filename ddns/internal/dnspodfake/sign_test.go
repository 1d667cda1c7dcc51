package dnspodfake

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestSignDocumentedExamples reproduces the worked example of Tencent's "Signature v3" page
// (CVM DescribeInstances, timestamp 1551113065): every intermediate value and the final
// signature, for the two published versions of the example. The English page ("Signature
// v3" under "Making API Requests" in DNSPod's API documentation) uses the key
// "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"; the Chinese page
// (https://cloud.tencent.com/document/api/1427/56189) masks it as "Gu5t9xGARNpq86cd98joQYCN3*******".
func TestSignDocumentedExamples(t *testing.T) {
	const payload = `{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`
	headers := map[string]string{"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}
	signed := []string{"content-type", "host"}
	const wantCanonical = "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n" +
		"35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
	const wantToSign = "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n" +
		"5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
	for key, want := range map[string]string{
		"Gu5t9xGARNpq86cd98joQYCN3EXAMPLE": "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
		"Gu5t9xGARNpq86cd98joQYCN3*******": "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c",
	} {
		canonical, toSign, sig := Sign(key, "cvm", 1551113065, headers, signed, []byte(payload))
		if canonical != wantCanonical {
			t.Errorf("canonical request:\n%s\nwant:\n%s", canonical, wantCanonical)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256([]byte(canonical))); got != "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031" {
			t.Errorf("hashed canonical request %s", got)
		}
		if toSign != wantToSign {
			t.Errorf("string to sign:\n%s\nwant:\n%s", toSign, wantToSign)
		}
		if sig != want {
			t.Errorf("key %s: signature %s, want the documented %s", key, sig, want)
		}
	}
}

func TestParseAuthorization(t *testing.T) {
	a, ok := parseAuthorization("TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")
	if !ok || a.secretID != "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE" || a.date != "2019-02-25" || a.service != "cvm" ||
		len(a.signed) != 2 || a.signature[:8] != "72e494ea" {
		t.Fatalf("parsed %+v %v", a, ok)
	}
	for _, bad := range []string{"", "HMAC-SHA256 Credential=x", "TC3-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=x",
		"TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, Signature=x"} {
		if _, ok := parseAuthorization(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}
