import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

#if canImport(Glibc)
    import Glibc
#endif

/// The socket client the etcd store speaks through: its parsing by table, and its failures
/// against real sockets on this machine (a closed port, a listener that never answers).
/// Ports 23780-23785 on 127.0.0.1.
@Suite("HTTP POST over a plain socket", .serialized)
struct HTTPPostTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var bytes: String
        var closed: Bool
        /// nil: incomplete; "!": invalid; otherwise the status and body expected.
        var expected: (status: Int, body: String)?
        var invalid = false

        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "content-length, whole", bytes: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", closed: false, expected: (200, "{}")),
        Case(label: "content-length, body still coming", bytes: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"", closed: false, expected: nil),
        Case(label: "content-length, closed early", bytes: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", closed: true, expected: nil, invalid: true),
        Case(label: "headers still coming", bytes: "HTTP/1.1 200 OK\r\nContent-Le", closed: false, expected: nil),
        Case(
            label: "chunked, whole, with an extension",
            bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n", closed: false,
            expected: (200, "{\"a\":1}\n")),
        Case(label: "chunked, last chunk not yet", bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", closed: false, expected: nil),
        Case(label: "close-delimited", bytes: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"x\":2}", closed: true, expected: (200, "{\"x\":2}")),
        Case(label: "an error status keeps its body", bytes: "HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\n\r\n{\"code\":3}   ", closed: false, expected: (400, "{\"code\":3}   ")),
        Case(label: "not HTTP", bytes: "SSH-2.0-OpenSSH_9.2\r\n\r\n", closed: true, expected: nil, invalid: true),
    ]

    @Test("an answer is complete once its body is whole", arguments: cases)
    func parse(_ test: Case) {
        let parsed = HTTPPost.parse(Data(test.bytes.utf8), closed: test.closed)
        switch parsed {
        case .complete(let response):
            #expect(test.expected?.status == response.status)
            #expect(test.expected?.body == String(decoding: response.body, as: UTF8.self))
        case .incomplete:
            #expect(test.expected == nil && !test.invalid, "incomplete")
        case .invalid(let why):
            #expect(test.invalid, "invalid: \(why)")
        }
    }

    @Test("a closed port is refused at once, again and again, without bringing the process down")
    func refused() async {
        let url = URL(string: "http://127.0.0.1:23781/v3/kv/range")!
        // URLSession on Linux crashed now and then on exactly this (etcd stopped under a
        // watcher); many concurrent attempts make such a crash likely if it were still there.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let result = await HTTPPost.post(url, body: Data("{}".utf8), timeout: 2)
                    guard case .failure(.refused) = result else {
                        Issue.record("expected a refusal, got \(result)")
                        return
                    }
                }
            }
        }
    }

    @Test("a listener that never answers times out at the deadline")
    func silent() async throws {
        let listener = try Listener(port: 23782)
        defer { listener.close() }
        // The exchange itself, on this thread: around `post`, the time would also count how
        // long the test's task waits for a thread of the cooperative pool, which a busy
        // parallel test run can make seconds.
        let started = ContinuousClock.now
        let result = HTTPPost.exchange(URL(string: "http://127.0.0.1:23782/x")!, body: Data("{}".utf8), deadline: Deadline(seconds: 0.5))
        let took = ContinuousClock.now - started
        guard case .failure(.timedOut) = result else {
            Issue.record("expected a timeout, got \(result)")
            return
        }
        // Not a figure: the bound only proves it ends (a busy CI run has starved threads for seconds).
        #expect(took >= .milliseconds(450) && took < .seconds(10), "took \(took)")
    }

    @Test("only http:// is spoken")
    func httpsRefused() async {
        let result = await HTTPPost.post(URL(string: "https://127.0.0.1:23783/x")!, body: Data(), timeout: 1)
        guard case .failure(.unreachable(let why)) = result else {
            Issue.record("expected a refusal, got \(result)")
            return
        }
        #expect(why.contains("only http://"))
    }
}

/// A TCP listener on 127.0.0.1 that accepts into its backlog and never answers, or, after
/// ``answerEvery(with:)``, answers every request with one canned reply.
final class Listener: @unchecked Sendable {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            Glibc.close(fd)
            throw ClusterError("cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
    }

    func close() { Glibc.shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }

    /// On a thread of its own: accepts each connection, reads the request, writes `reply`
    /// (a whole HTTP response) and closes, until the listener is closed.
    func answerEvery(with reply: String) {
        let fd = fd
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 65536)
                var request = Data()
                // Headers, then the body its Content-Length announces.
                while true {
                    let n = read(client, &buffer, buffer.count)
                    if n <= 0 { break }
                    request.append(contentsOf: buffer[0..<n])
                    let text = String(decoding: request, as: UTF8.self)
                    if let end = text.range(of: "\r\n\r\n") {
                        let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        if text[end.upperBound...].utf8.count >= length { break }
                    }
                }
                let bytes = Array(reply.utf8)
                _ = write(client, bytes, bytes.count)
                Glibc.close(client)
            }
        }
    }
}
