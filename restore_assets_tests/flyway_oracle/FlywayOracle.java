// Real Flyway (flyway-core + flyway-database-postgresql) behind a line protocol, so one JVM start
// serves a whole test session: each stdin line is a JSON request
//   {"url": ..., "user": ..., "password": ..., "action": "migrate|baseline|repair|validate|info",
//    "props": {"flyway.locations": ..., ...}}
// and gets one JSON answer line on stdout: {"ok": true|false, "error": ..., "info": [...],
// "validate": {...}}. Flyway's own log output goes to stderr.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import org.flywaydb.core.Flyway;
import org.flywaydb.core.api.MigrationInfo;
import org.flywaydb.core.api.output.ValidateOutput;
import org.flywaydb.core.api.output.ValidateResult;
import org.flywaydb.core.internal.configuration.ConfigUtils;

public class FlywayOracle {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        System.setOut(System.err); // anything Flyway prints must not mix with the answers
        ObjectMapper json = new ObjectMapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) continue;
            ObjectNode answer = json.createObjectNode();
            try {
                handle(json, json.readTree(line), answer);
                answer.put("ok", true);
            } catch (Throwable e) {
                answer.put("ok", false);
                answer.put("error", String.valueOf(e.getMessage()));
                answer.put("exception", e.getClass().getName());
            }
            out.println(json.writeValueAsString(answer));
        }
    }

    static void handle(ObjectMapper json, JsonNode request, ObjectNode answer) {
        if (request.get("action").asText().equals("conf")) { // how Flyway reads a flyway.conf
            Map<String, String> conf = ConfigUtils.loadConfigurationFile(
                    new java.io.File(request.get("file").asText()), "UTF-8", true);
            ObjectNode values = answer.putObject("conf");
            conf.forEach(values::put);
            return;
        }
        Map<String, String> props = new HashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = request.get("props").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            props.put(e.getKey(), e.getValue().asText());
        }
        Flyway flyway = Flyway.configure()
                .configuration(props)
                .dataSource(request.get("url").asText(), request.get("user").asText(),
                        request.get("password").asText())
                .load();
        String action = request.get("action").asText();
        switch (action) {
            case "migrate":
                answer.put("applied", flyway.migrate().migrationsExecuted);
                break;
            case "baseline":
                answer.put("baselined", flyway.baseline().successfullyBaselined);
                break;
            case "repair":
                flyway.repair();
                break;
            case "validate":
                ValidateResult result = flyway.validateWithResult();
                ObjectNode v = answer.putObject("validate");
                v.put("successful", result.validationSuccessful);
                v.put("error", result.errorDetails == null ? null : result.errorDetails.errorMessage);
                ArrayNode invalid = v.putArray("invalid");
                for (ValidateOutput o : result.invalidMigrations) {
                    ObjectNode row = invalid.addObject();
                    row.put("version", o.version);
                    row.put("description", o.description);
                    row.put("filepath", o.filepath);
                    row.put("error", o.errorDetails == null ? null : o.errorDetails.errorMessage);
                }
                break;
            case "info":
                break;
            default:
                throw new IllegalArgumentException("unknown action " + action);
        }
        if (action.equals("info") || request.path("with_info").asBoolean(false)) {
            ArrayNode rows = answer.putArray("info");
            for (MigrationInfo m : flyway.info().all()) {
                ObjectNode row = rows.addObject();
                row.put("category", m.getType().isSynthetic() ? "" : (m.getVersion() == null ? "Repeatable" : "Versioned"));
                row.put("version", m.getVersion() == null ? null : m.getVersion().getVersion());
                row.put("description", m.getDescription());
                row.put("type", m.getType().name());
                row.put("state", m.getState().getDisplayName());
                row.put("script", m.getScript());
                if (m.getChecksum() == null) row.putNull("checksum"); else row.put("checksum", m.getChecksum());
            }
        }
    }
}
