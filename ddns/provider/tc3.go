package provider

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// tc3Authorization computes Tencent Cloud API 3.0's "TC3-HMAC-SHA256" Authorization header
// for a POST to "/" with no query string, signing the named headers of hdr (lower-case
// names, in ASCII order) and the body. The steps follow Tencent's "Signature v3" document for
// API 3.0 (DNSPod's copy: https://cloud.tencent.com/document/api/1427/56189; in English
// "Signature v3" under "Making API Requests" in DNSPod's API documentation):
//
//	CanonicalRequest = "POST\n/\n\n" + CanonicalHeaders + "\n" + SignedHeaders + "\n" + hex(sha256(body))
//	  with CanonicalHeaders = for each signed header "name:value\n", name and value lower-cased and trimmed
//	StringToSign = "TC3-HMAC-SHA256\n" + timestamp + "\n" + date/service/tc3_request + "\n" + hex(sha256(CanonicalRequest))
//	SigningKey = HMAC(HMAC(HMAC("TC3"+SecretKey, date), service), "tc3_request"), date in UTC
//	Authorization = "TC3-HMAC-SHA256 Credential=" + SecretId + "/" + scope + ", SignedHeaders=" + ... + ", Signature=" + hex(HMAC(SigningKey, StringToSign))
func tc3Authorization(secretID, secretKey, service string, ts time.Time, hdr http.Header, signed []string, body []byte) string {
	var canon strings.Builder
	for _, name := range signed {
		canon.WriteString(name + ":" + strings.ToLower(strings.TrimSpace(hdr.Get(name))) + "\n")
	}
	signedList := strings.Join(signed, ";")
	req := "POST\n/\n\n" + canon.String() + "\n" + signedList + "\n" + sha256Hex(body)
	date := ts.UTC().Format("2006-01-02")
	scope := date + "/" + service + "/tc3_request"
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(ts.Unix(), 10) + "\n" + scope + "\n" + sha256Hex([]byte(req))
	key := hmacSHA256([]byte("TC3"+secretKey), date)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "tc3_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	return "TC3-HMAC-SHA256 Credential=" + secretID + "/" + scope + ", SignedHeaders=" + signedList + ", Signature=" + sig
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
