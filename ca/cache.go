package ca

import (
	"container/list"
	"crypto/tls"
	"sync"
	"time"
)

// leafEntry is a minted leaf with the time after which it is re-minted.
type leafEntry struct {
	cert      *tls.Certificate
	refreshAt time.Time
	gen       uint64 // issuer generation that minted it
}

// lru is a bounded least-recently-used map from host name to leaf.
type lru struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; values are *lruItem
	items map[string]*list.Element
}

type lruItem struct {
	name  string
	entry leafEntry
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the entry for name and marks it recently used.
func (c *lru) get(name string) (leafEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[name]
	if !ok {
		return leafEntry{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem).entry, true
}

// add stores e under name, evicting the least recently used entries beyond
// the bound.
func (c *lru) add(name string, e leafEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[name]; ok {
		el.Value.(*lruItem).entry = e
		c.order.MoveToFront(el)
		return
	}
	c.items[name] = c.order.PushFront(&lruItem{name: name, entry: e})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*lruItem).name)
	}
}

// len is the number of cached entries.
func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// purge drops every entry.
func (c *lru) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.items)
}
