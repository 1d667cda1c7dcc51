package dnspodfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
)

// Sign recomputes a TC3-HMAC-SHA256 signature the way the API server does, step by step as
// Tencent's "签名方法 v3" page writes it (https://cloud.tencent.com/document/api/1427/56189),
// for a POST to "/" with an empty query string. headers holds the value of each signed
// header (lower-case names); it returns the canonical request and string to sign as well,
// so a test can compare every intermediate value with the documented example. It is kept
// apart from the client's signer on purpose: a check that shared the client's code would
// pass whatever that code got wrong.
func Sign(secretKey, service string, timestamp int64, headers map[string]string, signed []string, payload []byte) (canonicalRequest, stringToSign, signature string) {
	// Step 1: CanonicalRequest = method \n URI \n query \n CanonicalHeaders \n SignedHeaders \n HashedRequestPayload
	var canonicalHeaders string
	for _, name := range signed {
		canonicalHeaders += name + ":" + strings.ToLower(strings.TrimSpace(headers[name])) + "\n"
	}
	canonicalRequest = strings.Join([]string{
		"POST", "/", "", canonicalHeaders, strings.Join(signed, ";"), fmt.Sprintf("%x", sha256.Sum256(payload)),
	}, "\n")

	// Step 2: StringToSign = Algorithm \n RequestTimestamp \n CredentialScope \n HashedCanonicalRequest
	date := time.Unix(timestamp, 0).UTC().Format("2006-01-02")
	stringToSign = fmt.Sprintf("TC3-HMAC-SHA256\n%d\n%s/%s/tc3_request\n%x", timestamp, date, service, sha256.Sum256([]byte(canonicalRequest)))

	// Step 3: SecretDate = HMAC("TC3"+SecretKey, Date); SecretService = HMAC(SecretDate, Service);
	// SecretSigning = HMAC(SecretService, "tc3_request"); Signature = hex(HMAC(SecretSigning, StringToSign)).
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	secretSigning := mac(mac(mac([]byte("TC3"+secretKey), date), service), "tc3_request")
	return canonicalRequest, stringToSign, fmt.Sprintf("%x", mac(secretSigning, stringToSign))
}
