// Sends identify/group/track/page messages through the real @segment/analytics-node SDK.
// Usage: node send.mjs HOST WRITE_KEY PREFIX USERS TRACKS_PER_USER
// Prints one JSON line per message sent: {"messageId": ..., "account": ...}.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, prefix, usersArg, tracksArg] = process.argv.slice(2)
const users = Number(usersArg)
const tracks = Number(tracksArg)
const errors = []
const analytics = new Analytics({ writeKey, host, maxRetries: 10, flushAt: 200, flushInterval: 200 })
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.code ?? err)))
const sent = []
for (let i = 0; i < users; i++) {
  const userId = `${prefix}-user-${i}`
  const account = `${prefix}-acct-${i % 25}`
  const mid = (kind) => {
    const messageId = `${prefix}-${i}-${kind}`
    sent.push({ messageId, account })
    return messageId
  }
  analytics.identify({ userId, traits: { email: `user${i}@${account}.test` }, messageId: mid('identify') })
  analytics.group({ userId, groupId: account, traits: { name: `Account ${i % 25}` }, messageId: mid('group') })
  for (let j = 0; j < tracks; j++) {
    analytics.track({ userId, event: 'Report Created', properties: { n: j }, context: { groupId: account }, messageId: mid(`track${j}`) })
  }
  analytics.page({ userId, name: 'Dashboard', messageId: mid('page') })
}
await analytics.closeAndFlush({ timeout: 60000 })
if (errors.length) {
  console.error(errors.join('\n'))
  process.exit(1)
}
for (const s of sent) console.log(JSON.stringify(s))
