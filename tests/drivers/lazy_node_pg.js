// node-postgres in transactions through pgsplit (client.query('BEGIN') ...).
// Inside a transaction reads run on the replica, simple and extended; after
// a write, reads run on the primary and see it; an error aborts the
// transaction as on PostgreSQL and COMMIT of it reports ROLLBACK; the
// transaction status the driver keeps from ReadyForQuery
// (getTransactionStatus()), printed on the `statuses:` line, and the command
// tags, are what they are directly (the test compares).
// Usage: node lazy_node_pg.js PORT PRIMARY REPLICA direct|proxy
// Expects table drv_lazy(id int primary key, n int) with rows 1..10.
const { Client } = require('pg');

async function main() {
  const [port, primary, replica] = process.argv.slice(2, 5).map(Number);
  const readsOn = process.argv[5] === 'proxy' ? replica : primary;
  const failures = [];
  const statuses = [];
  const check = (ok, what) => { if (!ok) failures.push(what); };
  const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', query_timeout: 20000 });
  await client.connect();
  const status = (label) => statuses.push(`${label}=${client.getTransactionStatus()}`);
  status('connected');
  const read = 'select inet_server_port() as port, n from drv_lazy where id = $1';

  let r = await client.query('BEGIN');
  status(`begin:${r.command}`);
  r = await client.query(read, [4]);
  const n = r.rows[0].n;
  check(r.rows[0].port === readsOn, `an extended-protocol read ran on port ${r.rows[0].port}, not ${readsOn}`);
  r = await client.query('select inet_server_port() as port');
  check(r.rows[0].port === readsOn, `a simple-protocol read ran on port ${r.rows[0].port}, not ${readsOn}`);
  r = await client.query({ name: 'lazy_named', text: read, values: [4] });
  check(r.rows[0].port === readsOn, `a named prepared read ran on port ${r.rows[0].port}, not ${readsOn}`);
  status('read');
  r = await client.query('update drv_lazy set n = n + 1 where id = $1', [4]);
  status(`wrote:${r.command}`);
  r = await client.query(read, [4]);
  check(r.rows[0].port === primary && r.rows[0].n === n + 1,
    `the read after the write gave ${JSON.stringify(r.rows[0])}; expected n=${n + 1} on the primary ${primary}`);
  r = await client.query('COMMIT');
  status(`commit:${r.command}`);

  await client.query('BEGIN');
  await client.query('select inet_server_port()');
  try {
    await client.query('select 1/0');
    failures.push('select 1/0 did not fail');
  } catch (e) {
    check(e.code === '22012', `select 1/0 failed with ${e.code}`);
  }
  // No status sample here: node-postgres rejects the query on the
  // ErrorResponse, and whether the ReadyForQuery ('E') has been read by then
  // depends on how the bytes were split into TCP reads, directly as well.
  try {
    await client.query('select 1');
    failures.push('a statement after an error did not fail');
  } catch (e) {
    check(e.code === '25P02', `a statement after an error failed with ${e.code}, not 25P02`);
  }
  status('aborted');
  r = await client.query('COMMIT');
  status(`commit:${r.command}`);
  r = await client.query('COMMIT');
  status(`commit-again:${r.command}`);
  await client.end();

  console.log(`statuses: ${statuses.join(' ')}`);
  if (failures.length) {
    console.error(`node-postgres through pgsplit:\n - ${failures.join('\n - ')}`);
    process.exit(1);
  }
  console.log('node-postgres ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
