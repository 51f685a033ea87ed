// node-postgres through pgsplit: named prepared statements ({name, text}),
// parameters, transactions. Usage: node node_pg_check.js PORT PRIMARY REPLICA
const { Client } = require('pg');

async function main() {
  const [port, primary, replica] = process.argv.slice(2).map(Number);
  const client = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await client.connect();
  await client.query('drop table if exists drv_node');
  await client.query('create table drv_node(id int primary key, name text)');
  for (let i = 0; i < 50; i++) {
    await client.query({ name: 'ins', text: 'insert into drv_node values ($1, $2)', values: [i, `n${i}`] });
  }
  for (let i = 0; i < 100; i++) {
    const r = await client.query({ name: 'where', text: 'select inet_server_port() as port, $1::int as i', values: [i] });
    if (![primary, replica].includes(r.rows[0].port) || r.rows[0].i !== i) throw new Error(`bad row ${JSON.stringify(r.rows[0])}`);
  }
  await client.query('begin');
  await client.query({ name: 'upd', text: 'update drv_node set name = $1 where id = $2', values: ['tx', 1] });
  const r = await client.query('select name, inet_server_port() as port from drv_node where id = 1');
  await client.query('commit');
  if (r.rows[0].name !== 'tx' || r.rows[0].port !== primary) throw new Error(`transaction read ${JSON.stringify(r.rows[0])}`);
  await client.end();
  console.log('node-postgres ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
