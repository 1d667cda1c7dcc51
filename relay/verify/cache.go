package verify

import (
	"net/netip"
	"sync"
	"time"
)

// cacheKey is one client as the admission URL sees it.
type cacheKey struct {
	key string
	src netip.Addr
}

type answer struct {
	allow   bool
	expires time.Time
}

// answerCache keeps admission answers for a while, bounded in size: when full, expired
// answers go first, then arbitrary ones (a miss only costs one more request).
type answerCache struct {
	max         int
	positiveTTL time.Duration
	negativeTTL time.Duration
	now         func() time.Time

	mu sync.Mutex
	m  map[cacheKey]answer
}

func newAnswerCache(max int, positive, negative time.Duration, now func() time.Time) *answerCache {
	return &answerCache{max: max, positiveTTL: positive, negativeTTL: negative, now: now, m: map[cacheKey]answer{}}
}

func (c *answerCache) get(k cacheKey) (allow, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[k]
	if !ok {
		return false, false
	}
	if !c.now().Before(a.expires) {
		delete(c.m, k)
		return false, false
	}
	return a.allow, true
}

func (c *answerCache) put(k cacheKey, allow bool) {
	ttl := c.negativeTTL
	if allow {
		ttl = c.positiveTTL
	}
	if ttl <= 0 || c.max <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old, a := range c.m {
			if !now.Before(a.expires) {
				delete(c.m, old)
			}
		}
		for old := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, old)
		}
	}
	c.m[k] = answer{allow: allow, expires: now.Add(ttl)}
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
