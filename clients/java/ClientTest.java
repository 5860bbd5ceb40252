// pgjdbc against a running vectorgate (VECTORGATE_JDBC_URL): connect, PreparedStatement
// with parameters of every column type, a batch, a search checked against an exact ranking
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

    // A parameter of every column type vectorgate stores, written by a PreparedStatement
    // and read back (and filtered on) past pgjdbc's server-prepare threshold, where it
    // switches to binary transfer.
    static void everyType(Connection c) throws Exception {
        try (Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS j_types");
            s.execute("CREATE TABLE j_types (id int PRIMARY KEY, s smallint, r real, u uuid, tz timestamptz, d date, "
                + "b bytea, n numeric(10,2), j jsonb, ta text[], ia int[], ba bigint[], embedding vector(2))");
        }
        UUID uuid = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        java.time.OffsetDateTime at = java.time.OffsetDateTime.parse("2024-05-06T07:08:09.123456Z");
        java.time.LocalDate day = java.time.LocalDate.parse("2024-02-29");
        byte[] bytes = {0, 1, (byte) 0xfe, (byte) 0xff};
        java.math.BigDecimal price = new java.math.BigDecimal("1234.50");
        try (PreparedStatement p = c.prepareStatement(
                "INSERT INTO j_types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?::vector)")) {
            for (int id = 1; id <= 6; id++) {
                p.setInt(1, id);
                p.setShort(2, (short) (id * 10));
                p.setFloat(3, id + 0.25f);
                p.setObject(4, uuid);
                p.setObject(5, at);
                p.setObject(6, day);
                p.setBytes(7, bytes);
                p.setBigDecimal(8, price);
                p.setString(9, "{\"k\": " + id + "}");
                p.setArray(10, c.createArrayOf("text", new String[] {"a", "b c"}));
                p.setArray(11, c.createArrayOf("int4", new Integer[] {id, 2}));
                p.setArray(12, c.createArrayOf("int8", new Long[] {1L << 40, (long) id}));
                p.setString(13, "[" + id + ",0]");
                check("jdbc types: insert row " + id, p.executeUpdate(), 1);
            }
        }
        try (PreparedStatement p = c.prepareStatement(
                "SELECT s, r, u, tz, d, b, n, j, ta, ia, ba FROM j_types WHERE id = ? AND s = ? AND u = ? AND d = ? AND n = ?")) {
            for (int id = 1; id <= 6; id++) {
                p.setInt(1, id);
                p.setShort(2, (short) (id * 10));
                p.setObject(3, uuid);
                p.setObject(4, day);
                p.setBigDecimal(5, price);
                try (ResultSet rs = p.executeQuery()) {
                    check("jdbc types: row " + id + " found", rs.next(), true);
                    check("jdbc types: smallint", rs.getShort(1), (short) (id * 10));
                    check("jdbc types: real", rs.getFloat(2), id + 0.25f);
                    check("jdbc types: uuid", rs.getObject(3, UUID.class), uuid);
                    check("jdbc types: timestamptz", rs.getObject(4, java.time.OffsetDateTime.class).toInstant(), at.toInstant());
                    check("jdbc types: date", rs.getObject(5, java.time.LocalDate.class), day);
                    check("jdbc types: bytea", Arrays.toString(rs.getBytes(6)), Arrays.toString(bytes));
                    check("jdbc types: numeric", rs.getBigDecimal(7), price);
                    check("jdbc types: jsonb", rs.getString(8).replace(" ", ""), "{\"k\":" + id + "}");
                    check("jdbc types: text[]", Arrays.asList((Object[]) rs.getArray(9).getArray()), List.of("a", "b c"));
                    check("jdbc types: int[]", Arrays.asList((Object[]) rs.getArray(10).getArray()), List.of(id, 2));
                    check("jdbc types: bigint[]", Arrays.asList((Object[]) rs.getArray(11).getArray()), List.of(1L << 40, (long) id));
                    check("jdbc types: one row", rs.next(), false);
                }
            }
        }
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
            everyType(c);
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
