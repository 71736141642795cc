// Drives @segment/analytics-node, unmodified, against a Waymark server.
// usage: node client.mjs HOST WRITE_KEY N
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, nArg] = process.argv.slice(2)
const n = parseInt(nArg ?? '50', 10)
const analytics = new Analytics({ writeKey, host, flushAt: 10, flushInterval: 200, maxRetries: 5 })

let failed = 0
analytics.on('error', (err) => { failed++; console.error('error', err?.reason?.message ?? err) })

// An anonymous visitor browses, then signs up and buys.
analytics.page({ anonymousId: 'anon-seg-1', name: 'Pricing', properties: { url: 'https://shop.example/pricing' } })
analytics.track({ anonymousId: 'anon-seg-1', event: 'product_viewed', properties: { sku: 'A-1' } })
analytics.identify({ userId: 'seg-user-1', anonymousId: 'anon-seg-1', traits: { email: 'Sam@Example.com', name: 'Sam Doe', plan: 'free' } })
for (let i = 0; i < n; i++) {
  analytics.track({ userId: 'seg-user-1', event: 'order_completed', properties: { revenue: 10, order: i } })
}
await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ sent: n + 3, failed }))
