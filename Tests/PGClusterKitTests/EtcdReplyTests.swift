import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Ports 23810-23813. Issue 20/21: every etcd reply's status is checked. An error page, a 404 or a 500 is an
/// error naming the endpoint and the status; it never reads as "no keys" (which would make
/// pgcluster act on an empty state: no primary recorded, nothing paused).
@Suite("etcd replies: anything but 200 is an error, never an empty answer", .serialized)
struct EtcdReplyTests {
    static func response(_ status: String, type: String, body: String) -> String {
        "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    static let replies: [(label: String, reply: String, mustSay: String)] = [
        ("500 with a JSON body and no message", response("500 Internal Server Error", type: "application/json", body: "{}"), "HTTP 500"),
        ("404 HTML page", response("404 Not Found", type: "text/html", body: "<html><body>not found</body></html>"), "HTTP 404"),
        ("200 HTML page (a proxy's)", response("200 OK", type: "text/html", body: "<html>welcome</html>"), "not a JSON object"),
        (
            "503 with etcd's own message", response("503 Service Unavailable", type: "application/json", body: #"{"error":"etcdserver: leader changed","code":14}"#),
            "leader changed"
        ),
    ]

    @Test("a reply that is not etcd's 200 makes range and txn fail, naming the endpoint and status")
    func notOK() async throws {
        for (index, c) in Self.replies.enumerated() {
            let port = UInt16(23810 + index)
            let listener = try Listener(port: port)
            listener.answerEvery(with: c.reply)
            defer { listener.close() }
            let client = EtcdClient(endpoints: [URL(string: "http://127.0.0.1:\(port)")!], timeout: 30)
            do {
                let keys = try await client.list(prefix: "/pgcluster/demo/")
                Issue.record("\(c.label): read as \(keys.count) keys instead of an error")
            } catch {
                #expect(error.message.contains("127.0.0.1:\(port)"), "\(c.label): \(error.message)")
                #expect(error.message.contains(c.mustSay), "\(c.label): \(error.message)")
            }
            do {
                let put = try await client.put("/pgcluster/demo/state", Data("{}".utf8), ifModRevision: nil)
                Issue.record("\(c.label): a put was answered \(put)")
            } catch {
                #expect(error.message.contains(c.mustSay), "\(c.label): \(error.message)")
            }
        }
    }
}
