// PgJDBC through pgsplit: after prepareThreshold uses a statement becomes a
// named server-side statement (S_1, ...), reused across transactions.
// Usage: java -cp postgresql.jar JdbcCheck.java URL PRIMARY REPLICA
import java.sql.*;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        int primary = Integer.parseInt(args[1]), replica = Integer.parseInt(args[2]);
        try (Connection c = DriverManager.getConnection(args[0], "postgres", "")) {
            try (Statement s = c.createStatement()) {
                s.execute("drop table if exists drv_jdbc");
                s.execute("create table drv_jdbc(id int primary key, name text)");
            }
            try (PreparedStatement ins = c.prepareStatement("insert into drv_jdbc values (?, ?)")) {
                for (int i = 0; i < 50; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "n" + i);
                    ins.executeUpdate();
                }
            }
            try (PreparedStatement q = c.prepareStatement("select inet_server_port(), ?::int")) {
                for (int i = 0; i < 100; i++) {
                    q.setInt(1, i);
                    try (ResultSet rs = q.executeQuery()) {
                        rs.next();
                        int port = rs.getInt(1);
                        if ((port != primary && port != replica) || rs.getInt(2) != i) throw new Exception("bad row");
                    }
                }
            }
            c.setAutoCommit(false);
            try (PreparedStatement u = c.prepareStatement("update drv_jdbc set name = ? where id = ?")) {
                u.setString(1, "tx");
                u.setInt(2, 1);
                u.executeUpdate();
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select name, inet_server_port() from drv_jdbc where id = 1")) {
                rs.next();
                if (!rs.getString(1).equals("tx") || rs.getInt(2) != primary) throw new Exception("transaction read wrong row or server");
            }
            c.commit();
        }
        System.out.println("jdbc ok");
    }
}
