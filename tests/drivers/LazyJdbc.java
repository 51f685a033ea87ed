// PgJDBC in transactions through pgsplit, with autocommit off: PgJDBC sends
// BEGIN in one extended-protocol batch with the first statement of each
// transaction. Inside a transaction reads run on the replica; after a write,
// reads run on the primary and see it; setReadOnly(true) transactions
// (BEGIN READ ONLY) read on the replica; an error aborts the transaction as
// on PostgreSQL (25P02 until rollback); and PgJDBC's transaction state,
// printed on the `statuses:` line, is what it is directly (the test compares).
// Usage: java -cp postgresql.jar LazyJdbc.java URL PRIMARY REPLICA direct|proxy
// Expects table drv_lazy(id int primary key, n int) with rows 1..10.
import java.sql.*;
import java.util.ArrayList;
import java.util.List;
import org.postgresql.core.BaseConnection;

public class LazyJdbc {
    static final List<String> failures = new ArrayList<>();
    static final List<String> statuses = new ArrayList<>();

    static void check(boolean ok, String what) {
        if (!ok) failures.add(what);
    }

    static void status(Connection c, String label) throws SQLException {
        statuses.add(label + "=" + c.unwrap(BaseConnection.class).getTransactionState());
    }

    static int[] read(Connection c, int id) throws SQLException {
        try (PreparedStatement q = c.prepareStatement("select inet_server_port(), n from drv_lazy where id = ?")) {
            q.setInt(1, id);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return new int[] {rs.getInt(1), rs.getInt(2)};
            }
        }
    }

    static String sqlState(Connection c, String sql) {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
            return "00000";
        } catch (SQLException e) {
            return e.getSQLState();
        }
    }

    public static void main(String[] args) throws Exception {
        int primary = Integer.parseInt(args[1]), replica = Integer.parseInt(args[2]);
        int readsOn = args[3].equals("proxy") ? replica : primary;
        try (Connection c = DriverManager.getConnection(args[0], "postgres", "")) {
            c.setAutoCommit(false);
            status(c, "connected");
            // Several times: PgJDBC switches to named server-side statements
            // after prepareThreshold (5) uses.
            int n = 0;
            for (int i = 0; i < 7; i++) {
                int[] row = read(c, 5);
                n = row[1];
                check(row[0] == readsOn, "read " + i + " of a transaction ran on port " + row[0] + ", not " + readsOn);
            }
            status(c, "read");
            try (PreparedStatement u = c.prepareStatement("update drv_lazy set n = n + 1 where id = ?")) {
                u.setInt(1, 5);
                check(u.executeUpdate() == 1, "the update touched no row");
            }
            status(c, "wrote");
            int[] row = read(c, 5);
            check(row[0] == primary && row[1] == n + 1,
                "the read after the write gave n=" + row[1] + " on port " + row[0] + "; expected n=" + (n + 1) + " on the primary " + primary);
            c.commit();
            status(c, "committed");

            c.setReadOnly(true);
            row = read(c, 5);
            check(row[0] == readsOn, "a read in a read-only transaction ran on port " + row[0] + ", not " + readsOn);
            check(row[1] == n + 1, "the next transaction read n=" + row[1] + ", not the committed " + (n + 1));
            c.commit();
            c.setReadOnly(false);

            read(c, 5);
            check(sqlState(c, "select 1/0").equals("22012"), "select 1/0 did not fail with 22012");
            status(c, "error");
            String state = sqlState(c, "select 1");
            check(state.equals("25P02"), "a statement after an error got " + state + ", not 25P02");
            status(c, "aborted");
            c.rollback();
            status(c, "rolled back");
        }
        System.out.println("statuses: " + String.join(" ", statuses));
        if (!failures.isEmpty()) {
            System.err.println("PgJDBC through pgsplit:\n - " + String.join("\n - ", failures));
            System.exit(1);
        }
        System.out.println("jdbc ok");
    }
}
