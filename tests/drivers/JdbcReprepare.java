// PgJDBC through pgsplit: a server-prepared statement never changes its
// result type under the client. Usage:
//   java -cp postgresql.jar JdbcReprepare.java URL PRIMARY REPLICA
//
// Four connections run "select a, b from <table>" past prepareThreshold, so
// each holds a named server-side statement (S_n) described with b int4,
// which pgsplit prepares on the server connections that run it. The URL
// should carry assumeMinServerVersion=9.0 or later: otherwise PgJDBC sends
// extra_float_digits and application_name as SET statements in an
// extended-protocol batch at connect, which pins it to one primary
// connection in pgsplit, and a pinned client never meets the bug. Another
// connection then runs ALTER TABLE ... ALTER b TYPE text USING '1234'.
// Directly, PostgreSQL answers the stale statement with 0A000 "cached plan
// must not change result type" and PgJDBC (autocommit) prepares it again and
// retries, so getString(2) is "1234". Through pgsplit the statement also runs
// on server connections where it was never prepared (other clients hold the
// ones it used), is prepared fresh there with b text, and PgJDBC decodes the
// text's bytes with its int4 codec: "825373492". Every read after the ALTER
// must give "1234".
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcReprepare {
    static final String TABLE = "reprep_jdbc_" + ProcessHandle.current().pid();
    static final String QUERY = "select a, b from " + TABLE;

    public static void main(String[] args) throws Exception {
        String url = args[0];
        int primary = Integer.parseInt(args[1]), replica = Integer.parseInt(args[2]);
        String direct = "jdbc:postgresql://127.0.0.1:" + replica + "/postgres";
        try (Connection setup = DriverManager.getConnection(url, "postgres", "")) {
            run(setup, "drop table if exists " + TABLE);
            run(setup, "create table " + TABLE + "(a int, b int)");
            run(setup, "insert into " + TABLE + " values (1, 2)");
            waitReplica(direct, "select count(*) from pg_class where relname = '" + TABLE + "'", "1");
            waitReplica(direct, "select count(*) from " + TABLE, "1");

            List<Connection> readers = new ArrayList<>();
            List<PreparedStatement> statements = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                Connection c = DriverManager.getConnection(url, "postgres", "");
                readers.add(c);
                statements.add(c.prepareStatement(QUERY));
            }
            ExecutorService pool = Executors.newCachedThreadPool();
            // Past prepareThreshold (5): named server-side statements. One
            // reader at a time, so that few server connections have it.
            for (PreparedStatement ps : statements) {
                for (int i = 0; i < 8; i++) {
                    String b = read(ps);
                    if (!b.equals("2")) throw new Exception("before the ALTER: b = " + b);
                }
            }

            run(setup, "alter table " + TABLE + " alter b type text using '1234'");
            waitReplica(direct, "select atttypid::regtype::text from pg_attribute where attrelid = '"
                    + TABLE + "'::regclass and attname = 'b'", "text");

            List<String> bad = new ArrayList<>();
            int[] blocking = {6, 4, 2, 1, 0, 5};
            for (int round = 0; round < blocking.length; round++) {
                // Clients holding the connections the readers used last (a
                // pool hands out its most recently used first), so that the
                // statement runs where it was never prepared.
                // Connected first, so that all of them sleep when the readers read.
                List<Connection> busy = new ArrayList<>();
                for (int b = 0; b <= blocking[round]; b++) busy.add(DriverManager.getConnection(url, "postgres", ""));
                List<Future<?>> blockers = new ArrayList<>();
                for (int b = 0; b < busy.size(); b++) {
                    Connection c = busy.get(b);
                    String hint = b == 0 ? "/* pgsplit:primary */ " : "";
                    blockers.add(pool.submit(() -> hold(c, hint)));
                }
                Thread.sleep(200);
                for (String label : new String[] {"round " + round, "round " + round + ", no blockers"}) {
                    List<Future<String>> reads = new ArrayList<>();
                    for (PreparedStatement ps : statements) reads.add(pool.submit(() -> read(ps)));
                    for (int i = 0; i < reads.size(); i++) {
                        try {
                            String b = reads.get(i).get();
                            if (!b.equals("1234")) bad.add("reader " + i + " " + label + ": b = " + b);
                        } catch (ExecutionException e) {
                            bad.add("reader " + i + " " + label + ": " + e.getCause());
                        }
                    }
                    for (Future<?> f : blockers) f.get();
                }
                for (Connection c : busy) c.close();
            }
            pool.shutdown();
            run(setup, "drop table " + TABLE);
            for (Connection c : readers) c.close();
            if (!bad.isEmpty()) {
                throw new Exception(bad.size() + " reads after the ALTER went wrong (directly: none):\n  "
                        + String.join("\n  ", bad.subList(0, Math.min(bad.size(), 30))));
            }
        }
        System.out.println("jdbc reprepare ok");
    }

    static String read(PreparedStatement ps) throws SQLException {
        synchronized (ps) {
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                if (rs.getInt(1) != 1) throw new SQLException("a = " + rs.getString(1));
                return rs.getString(2);
            }
        }
    }

    static Void hold(Connection c, String hint) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(hint + "select pg_sleep(0.6)");
        }
        return null;
    }

    static void run(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }

    static void waitReplica(String url, String sql, String want) throws Exception {
        try (Connection c = DriverManager.getConnection(url, "postgres", "");
             Statement s = c.createStatement()) {
            for (int i = 0; i < 200; i++) {
                try (ResultSet rs = s.executeQuery(sql)) {
                    if (rs.next() && want.equals(rs.getString(1))) return;
                }
                Thread.sleep(50);
            }
        }
        throw new Exception("the replica never showed " + want + " for " + sql);
    }
}
