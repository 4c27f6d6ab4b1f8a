// Tellijn's PostgreSQL endpoint from pgjdbc, the driver inside DBeaver and Metabase.
// Run by tests/sql_clients_e2e.rs: java -cp postgresql.jar:. JdbcClient URL USER PASSWORD ROOM.
// Prints key=value lines; any failure ends the run with its message and exit code 1.
import java.sql.*;
import java.util.*;

public class JdbcClient {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", a[1]);
        p.setProperty("password", a[2]);
        try (Connection c = DriverManager.getConnection(a[0], p)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, null, "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            Collections.sort(tables);
            System.out.println("tables=" + String.join(",", tables));
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, null, "occupancy", null)) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
            }
            System.out.println("columns=" + String.join(",", cols));
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT room, minute, occupancy_max FROM occupancy WHERE room = ? AND occupancy_max >= ? ORDER BY minute LIMIT 1")) {
                ps.setString(1, a[3]);
                ps.setInt(2, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("first=" + rs.getString(1) + " " + rs.getTimestamp(2).toInstant() + " " + rs.getInt(3));
                }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM rooms")) {
                rs.next();
                System.out.println("rooms=" + rs.getLong(1));
            }
        }
    }
}
