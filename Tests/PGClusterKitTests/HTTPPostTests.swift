import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

#if canImport(Glibc)
    import Glibc
#endif

/// The HTTP client the etcd store speaks through (libcurl): real answers framed every way
/// HTTP/1.1 allows, and its failures against real sockets on this machine (a closed port, a
/// listener that never answers, a plain listener spoken to over https).
/// Ports 23779-23789 on 127.0.0.1.
@Suite("HTTP POST through libcurl", .serialized)
struct HTTPPostTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        /// The whole reply the listener writes, then it closes the connection.
        var reply: String
        /// The status and body expected; nil: a failure (not an HTTP answer).
        var expected: (status: Int, body: String)?

        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "content-length", reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", expected: (200, "{}")),
        Case(
            label: "chunked, with an extension",
            reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n",
            expected: (200, "{\"a\":1}\n")),
        Case(label: "close-delimited", reply: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"x\":2}", expected: (200, "{\"x\":2}")),
        Case(
            label: "an error status keeps its body", reply: "HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\n\r\n{\"code\":3}   ",
            expected: (400, "{\"code\":3}   ")),
        Case(label: "content-length, closed early", reply: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", expected: nil),
        Case(label: "not HTTP", reply: "SSH-2.0-OpenSSH_9.2\r\n\r\n", expected: nil),
    ]

    @Test("an answer is read whole however it is framed; a broken one is a failure", arguments: cases)
    func framing(_ test: Case) async throws {
        let port = UInt16(23784 + Self.cases.firstIndex { $0.label == test.label }!)
        let listener = try Listener(port: port)
        listener.answerEvery(with: test.reply)
        defer { listener.close() }
        // A generous deadline: the framing is what is checked, and a broken answer fails at
        // once (a close, a parse error); 5 s ran out under load in a CI run.
        let result = await HTTPPost.post(URL(string: "http://127.0.0.1:\(port)/v3/kv/range")!, body: Data("{}".utf8), timeout: 30)
        switch result {
        case .success(let response):
            #expect(test.expected?.status == response.status, "\(response.status)")
            #expect(test.expected?.body == String(decoding: response.body, as: UTF8.self))
        case .failure(let failure):
            #expect(test.expected == nil, "failed: \(failure)")
            if case .refused = failure { Issue.record("the listener was not there") }
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
                    let result = await HTTPPost.post(url, body: Data("{}".utf8), timeout: 30)
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

    @Test("https to a listener that does not speak TLS fails as TLS, in one line")
    func httpsToPlain() async throws {
        let listener = try Listener(port: 23783)
        // As a plain HTTP server does to bytes it cannot read: it answers at once.
        listener.answerEvery(with: "HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}", readFirst: false)
        defer { listener.close() }
        let result = await HTTPPost.post(URL(string: "https://127.0.0.1:23783/x")!, body: Data(), timeout: 30)
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(!"\(failure)".contains("\n"), "\(failure)")
        guard case .tls = failure else {
            Issue.record("expected a TLS failure, got \(failure)")
            return
        }
    }

    /// Three POSTs to 127.0.0.1:`port` in a row, each of which must be answered 200;
    /// returns how many connections the listener accepted for them.
    static func threeCalls(to listener: Listener, port: Int) async -> Int? {
        for call in 1...3 {
            let result = await HTTPPost.post(URL(string: "http://127.0.0.1:\(port)/v3/kv/range")!, body: Data("{}".utf8), timeout: 30)
            guard case .success(let response) = result, response.status == 200 else {
                Issue.record("call \(call): \(result)")
                return nil
            }
        }
        return listener.accepted
    }

    @Test("a connection is kept between calls: three calls to an HTTP/1.1 server take one connection")
    func kept() async throws {
        let listener = try Listener(port: 23779)
        listener.answerEvery(with: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", keepOpen: true)
        defer { listener.close() }
        let accepted = await Self.threeCalls(to: listener, port: 23779)
        #expect(accepted == 1, "\(String(describing: accepted)) connections for 3 calls")
    }

    @Test("a kept connection the server has closed since is not a failure: the next call connects again")
    func keptButClosed() async throws {
        let listener = try Listener(port: 23780)
        // It answers as HTTP/1.1 (the connection may stay) and closes: as etcd restarted.
        listener.answerEvery(with: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        defer { listener.close() }
        #expect(await Self.threeCalls(to: listener, port: 23780) == 3)
    }

    @Test("only http and https are spoken")
    func otherSchemes() async {
        let result = await HTTPPost.post(URL(string: "file:///etc/passwd")!, body: Data(), timeout: 30)
        guard case .failure(.unreachable(let why)) = result else {
            Issue.record("expected a refusal, got \(result)")
            return
        }
        #expect(why.contains("only http:// and https://"))
    }
}

/// A TCP listener on 127.0.0.1 that accepts into its backlog and never answers, or, after
/// ``answerEvery(with:)``, answers every request with one canned reply.
final class Listener: @unchecked Sendable {
    let fd: Int32
    private let lock = NSLock()
    private var acceptedCount = 0
    /// Connections accepted so far.
    var accepted: Int { lock.withLock { acceptedCount } }

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

    /// Whether a thread of ``answerEvery(with:readFirst:keepOpen:)`` accepts on `fd`: it then
    /// closes it, once its accept fails. Closed here under its feet, the number could go to
    /// the next test's listener before the thread's next accept, which then answered that
    /// listener's clients with this one's reply (an etcd 503 where a framing case expected a
    /// broken answer, in a unit test run).
    private var accepting = false

    /// Stops accepting; the socket is closed by its accepting thread, or here when none.
    func close() {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        if !lock.withLock({ accepting }) { Glibc.close(fd) }
    }

    /// On a thread of its own: accepts each connection, reads the request, writes `reply`
    /// (a whole HTTP response) and closes, until the listener is closed. `keepOpen`: answers
    /// every request on a connection until the client closes it, as an HTTP/1.1 server does.
    func answerEvery(with reply: String, readFirst: Bool = true, keepOpen: Bool = false) {
        let fd = fd
        lock.withLock { accepting = true }
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else {
                    // Shut down (or failing): ours to close, and never accepted on again.
                    Glibc.close(fd)
                    return
                }
                lock.withLock { acceptedCount += 1 }
                repeat {
                    guard !readFirst || Self.readRequest(client) else { break }
                    let bytes = Array(reply.utf8)
                    _ = write(client, bytes, bytes.count)
                } while keepOpen
                Glibc.close(client)
            }
        }
    }

    /// Reads one request: its headers, then the body its Content-Length announces. False
    /// when the client closed the connection first.
    static func readRequest(_ client: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var request = Data()
        while true {
            let n = read(client, &buffer, buffer.count)
            if n <= 0 { return false }
            request.append(contentsOf: buffer[0..<n])
            let text = String(decoding: request, as: UTF8.self)
            if let end = text.range(of: "\r\n\r\n") {
                let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if text[end.upperBound...].utf8.count >= length { return true }
            }
        }
    }
}
