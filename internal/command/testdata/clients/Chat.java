// Chat.java sends one chat completion with Java's HttpClient and prints the
// answer. Java reads neither HTTPS_PROXY nor SSL_CERT_FILE: the proxy comes
// from -Dhttps.proxyHost/-Dhttps.proxyPort (ProxySelector.getDefault) and
// the CA from a trust store made with keytool (-Djavax.net.ssl.trustStore).
// Run as a single-file program: java Chat.java.
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Chat {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder()
                .proxy(ProxySelector.getDefault())
                .connectTimeout(Duration.ofSeconds(20))
                .build();
        HttpRequest req = HttpRequest.newBuilder(URI.create("https://api.openai.com/v1/chat/completions"))
                .header("Authorization", "Bearer " + System.getenv("OPENAI_API_KEY"))
                .header("Content-Type", "application/json")
                .timeout(Duration.ofSeconds(30))
                .POST(HttpRequest.BodyPublishers.ofString(
                        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hello from java\"}]}"))
                .build();
        HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) {
            System.err.println("Chat.java: " + resp.statusCode() + " " + resp.body());
            System.exit(1);
        }
        System.out.println(resp.body());
    }
}
