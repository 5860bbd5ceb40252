// pgjdbc against a running vectorgate (VECTORGATE_JDBC_URL): connect, PreparedStatement
// with parameters of several types, a batch, a search checked against an exact ranking
// computed here, and DatabaseMetaData.getTables, getColumns and getPrimaryKeys.
import java.sql.*;
import java.util.*;

public class ClientTest {
    static void check(String name, Object got, Object want) {
        if (!Objects.equals(got, want)) {
            System.out.println("FAIL " + name + ": got " + got + ", want " + want);
            System.exit(1);
        }
        System.out.println("ok   " + name);
    }

    static String vec(double[] v) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < v.length; i++) b.append(i > 0 ? "," : "").append(v[i]);
        return b.append("]").toString();
    }

    public static void main(String[] args) throws Exception {
        Random r = new Random(5);
        Map<Long, double[]> vecs = new TreeMap<>();
        for (long i = 0; i < 30; i++) vecs.put(i, new double[] {r.nextGaussian(), r.nextGaussian(), r.nextGaussian()});
        try (Connection c = DriverManager.getConnection(System.getenv("VECTORGATE_JDBC_URL"), "tester", "")) {
            check("jdbc: server version", c.getMetaData().getDatabaseMajorVersion(), 16);
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS j_items");
                s.execute("CREATE TABLE j_items (id bigint PRIMARY KEY, name text, price double precision, ok boolean, at timestamp, embedding vector(3)) WITH (distance = 'l2')");
            }
            try (PreparedStatement p = c.prepareStatement("INSERT INTO j_items VALUES (?, ?, ?, ?, ?, ?::vector)")) {
                for (Map.Entry<Long, double[]> e : vecs.entrySet()) {
                    p.setLong(1, e.getKey());
                    p.setString(2, "n" + e.getKey());
                    p.setDouble(3, e.getKey() * 1.5);
                    p.setBoolean(4, e.getKey() % 2 == 0);
                    p.setTimestamp(5, Timestamp.valueOf("2024-01-02 03:04:05"));
                    p.setString(6, vec(e.getValue()));
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check("jdbc: batch insert", counts.length, 30);
            }
            double[] q = {0.1, -0.2, 0.3};
            List<Long> want = new ArrayList<>(vecs.keySet());
            want.sort(Comparator.comparingDouble(id -> {
                double[] v = vecs.get(id);
                double s = 0;
                for (int i = 0; i < 3; i++) s += (v[i] - q[i]) * (v[i] - q[i]);
                return s;
            }));
            try (PreparedStatement p = c.prepareStatement("SELECT id, name, price, ok, at FROM vector_search('j_items', ?::vector, 5) ORDER BY distance")) {
                for (int round = 0; round < 6; round++) { // past pgjdbc's server-prepare threshold
                    p.setString(1, vec(q));
                    List<Long> got = new ArrayList<>();
                    try (ResultSet rs = p.executeQuery()) {
                        while (rs.next()) {
                            got.add(rs.getLong(1));
                            check("jdbc: typed columns", rs.getString(2) + "/" + rs.getDouble(3) + "/" + rs.getBoolean(4) + "/" + rs.getTimestamp(5),
                                "n" + rs.getLong(1) + "/" + rs.getLong(1) * 1.5 + "/" + (rs.getLong(1) % 2 == 0) + "/2024-01-02 03:04:05.0");
                        }
                    }
                    check("jdbc: search round " + round, got, want.subList(0, 5));
                }
            }
            DatabaseMetaData md = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check("jdbc: getTables", tables.contains("j_items"), true);
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "j_items", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("NULLABLE"));
            }
            check("jdbc: getColumns", columns, List.of("id:int8:0", "name:text:1", "price:float8:1", "ok:bool:1", "at:timestamp:1", "embedding:vector:1"));
            List<String> keys = new ArrayList<>();
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "j_items")) {
                while (rs.next()) keys.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("KEY_SEQ") + ":" + rs.getString("PK_NAME"));
            }
            check("jdbc: getPrimaryKeys", keys, List.of("id:1:j_items_pkey"));
        }
        System.out.println("java clients: all checks passed");
    }
}
