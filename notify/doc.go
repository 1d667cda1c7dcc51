// Package notify tells webhooks about what the other parts did: an address changed, a DNS
// record was written or is failing, a certificate was renewed or its renewal is failing
// close to expiry, a part keeps failing. Each webhook gets a JSON POST of the Event, or a
// body of its own from a small template ({{record}}, {{new}}, {{message}}, …).
//
// Sending never delays the part that emitted the event: Notify only puts the event in each
// webhook's bounded queue (the oldest is dropped, and counted, when it is full), and one
// goroutine per webhook sends them in order, retrying with backoff. Webhook URLs often
// carry a secret (a Telegram bot token, a Bark or ServerChan key), so they are shown and
// logged only as scheme://host/… (Redact).
//
// notify imports no other part: the agent turns their events into Events.
package notify
