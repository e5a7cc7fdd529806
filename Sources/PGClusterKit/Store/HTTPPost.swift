import CCurl
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The files a TLS exchange uses: the CA that must have signed the server's certificate
/// (nil: the system's trust store), and the client certificate and key to present.
public struct TLSFiles: Sendable, Hashable {
    public var ca: String?
    public var cert: String?
    public var key: String?

    public init(ca: String? = nil, cert: String? = nil, key: String? = nil) {
        self.ca = ca
        self.cert = cert
        self.key = key
    }
}

/// One HTTP POST through libcurl (Debian's libcurl4-openssl-dev, the `CCurl` module), with
/// one deadline for the whole exchange: resolve, connect, TLS handshake, send, and read the
/// answer to its end.
///
/// libcurl does what etcd's JSON gateway needs and a hand-written socket client could not:
/// TLS verified against a CA file and the endpoint's host name, and a client certificate.
/// It is used through its blocking "easy" interface on a thread of its own (off Swift's
/// cooperative pool), with `CURLOPT_NOSIGNAL` (no SIGALRM for timeouts) and no dispatch
/// sources: FoundationNetworking's URLSession, libcurl wrapped in dispatch sources, crashed
/// the process now and then when connections were refused (swift-corelibs-foundation
/// #4791), which is what a watcher sees while etcd is down.
///
/// Connections are kept between calls (``Handles``): an easy handle that finished its
/// exchange goes back to a small pool with its open connection, and the next call to the
/// same endpoint takes it (libcurl also reuses a connection only to the same endpoint with
/// the same TLS settings, and checks that it is still alive first). With TLS and a client certificate a new connection
/// costs a handshake, and loading the CA, the certificate and the key, each call: the
/// watcher's failover makes several calls in a row (its intent, the state, the history).
/// A handle whose exchange failed is closed, not kept. One thread uses a handle at a time.
///
/// Proxies from the environment (`http_proxy`, `https_proxy`) are ignored, redirects are not
/// followed, and only http and https are spoken.
enum HTTPPost {
    struct Response: Sendable {
        var status: Int
        var body: Data
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case refused
        case timedOut
        case unreachable(String)
        /// The TLS handshake failed: the server's certificate was not trusted or not for this
        /// host name, or the server refused ours (or that we had none).
        case tls(String)
        case badResponse(String)

        var description: String {
            switch self {
            case .refused: "connection refused"
            case .timedOut: "timed out"
            case .unreachable(let why): why
            case .tls(let why): "TLS: \(why)"
            case .badResponse(let why): "not an HTTP answer: \(why)"
            }
        }
    }

    /// libcurl's global state, set up once before the first handle (curl_global_init is not
    /// to be raced with other threads' first calls).
    private static let initialized: Bool = pgc_curl_global_init() == CURLE_OK

    /// POSTs `body` (JSON) to `url` (`http://` or `https://host:port/path`); the answer whatever
    /// its status, or why there was none within `timeout` seconds.
    static func post(
        _ url: URL, body: Data, headers: [String] = [], tls: TLSFiles = TLSFiles(), timeout: Double
    ) async -> Result<Response, Failure> {
        let deadline = Deadline(seconds: timeout)
        return await Blocking.run { exchange(url, body: body, headers: headers, tls: tls, deadline: deadline) }
    }

    /// The exchange itself, on the calling thread (it blocks until the answer or the deadline).
    static func exchange(
        _ url: URL, body: Data, headers: [String] = [], tls: TLSFiles = TLSFiles(), deadline: Deadline
    ) -> Result<Response, Failure> {
        guard url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty else {
            return .failure(.unreachable("only http:// and https:// endpoints are spoken, not \(url.absoluteString)"))
        }
        // Handles are kept per endpoint and TLS files: the next call to it finds its connection.
        let endpoint = Handles.Endpoint(scheme: url.scheme ?? "", host: host, port: url.port, tls: tls)
        guard initialized, let handle = Handles.shared.take(endpoint) else { return .failure(.unreachable("libcurl could not start")) }
        var keep = false
        defer { if keep { Handles.shared.give(handle, endpoint) } else { curl_easy_cleanup(handle) } }
        let left = deadline.millisecondsLeft
        if left <= 0 { return .failure(.timedOut) }

        var list: UnsafeMutablePointer<curl_slist>?
        for header in ["Content-Type: application/json", "Expect:"] + headers {
            list = curl_slist_append(list, header)
        }
        defer { curl_slist_free_all(list) }
        let sink = Sink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        var errorText = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        var setup = CURLE_OK
        func set(_ code: CURLcode) { if setup == CURLE_OK { setup = code } }
        set(pgc_curl_setopt_string(handle, CURLOPT_URL, url.absoluteString))
        set(pgc_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
        set(pgc_curl_setopt_string(handle, CURLOPT_PROXY, ""))
        set(pgc_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(pgc_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, left))
        set(pgc_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, left))
        set(pgc_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list)))
        set(pgc_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count))
        if body.isEmpty {
            set(pgc_curl_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, ""))
        } else {
            // libcurl copies the bytes now (COPYPOSTFIELDS), so `body` need not outlive this call.
            set(body.withUnsafeBytes { pgc_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress!)) })
        }
        set(pgc_curl_setopt_write(handle, { data, size, count, context in
            guard let data, let context else { return 0 }
            Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue().data.append(
                UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: size * count)
            return size * count
        }, context))
        if url.scheme == "https" {
            set(pgc_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
            set(pgc_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
            set(pgc_curl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)))
            if let ca = tls.ca {
                // Only this CA: not also the system's store.
                set(pgc_curl_setopt_string(handle, CURLOPT_CAINFO, ca))
                set(pgc_curl_setopt_string(handle, CURLOPT_CAPATH, nil))
            }
            if let cert = tls.cert, let key = tls.key {
                set(pgc_curl_setopt_string(handle, CURLOPT_SSLCERT, cert))
                set(pgc_curl_setopt_string(handle, CURLOPT_SSLCERTTYPE, "PEM"))
                set(pgc_curl_setopt_string(handle, CURLOPT_SSLKEY, key))
                set(pgc_curl_setopt_string(handle, CURLOPT_SSLKEYTYPE, "PEM"))
            }
        }
        guard setup == CURLE_OK else {
            return .failure(.unreachable("libcurl refused a setting: \(String(cString: curl_easy_strerror(setup)))"))
        }
        // The error buffer is written while `perform` runs: keep the array where it is.
        let code = errorText.withUnsafeMutableBufferPointer { buffer -> CURLcode in
            _ = pgc_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, buffer.baseAddress)
            let code = curl_easy_perform(handle)
            _ = pgc_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
            return code
        }
        if code == CURLE_OK {
            var status = 0
            _ = pgc_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
            keep = true
            return .success(Response(status: status, body: sink.data))
        }
        let detail = errorText.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let why = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        var osErrno = 0
        _ = pgc_curl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
        return .failure(failure(code, why: why, osErrno: Int32(osErrno), https: url.scheme == "https"))
    }

    /// What a libcurl error means for the caller.
    static func failure(_ code: CURLcode, why: String, osErrno: Int32, https: Bool) -> Failure {
        // A TLS server that rejects the handshake (no client certificate, or one it does not
        // trust) may just close the connection: depending on timing libcurl then reports a
        // failed read or write, nothing received, or a socket no longer connected.
        let ended = [CURLE_COULDNT_CONNECT, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING].contains(code)
        let closed = osErrno == ENOTCONN || osErrno == ECONNRESET || why.contains("getpeername") || why.contains("reset by peer")
        if https, ended, closed || why.contains("alert") || why.contains("SSL") {
            return .tls(
                "the server ended the connection during the TLS handshake (does it require a client certificate? "
                    + "store.etcd.cert and key): \(why)")
        }
        return switch code {
        case CURLE_COULDNT_CONNECT where osErrno == ECONNREFUSED: .refused
        case CURLE_OPERATION_TIMEDOUT: .timedOut
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CLIENTCERT, CURLE_SSL_CRL_BADFILE,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS:
            .tls(why)
        case CURLE_GOT_NOTHING, CURLE_WEIRD_SERVER_REPLY, CURLE_PARTIAL_FILE: .badResponse(why)
        default: .unreachable(why)
        }
    }

    /// Where libcurl's write callback puts the body; used by one thread at a time.
    private final class Sink {
        var data = Data()
    }

    /// Easy handles that finished an exchange, with the connection each keeps open (libcurl
    /// closes one left idle for 118 s), by endpoint: a call takes one that last spoke to its
    /// endpoint, so calls running at once to different endpoints never take each other's. A
    /// handle is taken by one exchange and given back after it, its options reset
    /// (`curl_easy_reset` keeps the live connections and TLS sessions); at most
    /// `limit` wait per endpoint, the rest are closed.
    final class Handles: @unchecked Sendable {
        /// Where a kept connection goes, and with which TLS files.
        struct Endpoint: Hashable {
            var scheme: String
            var host: String
            var port: Int?
            var tls: TLSFiles
        }

        static let shared = Handles()
        private let lock = NSLock()
        private var idle: [Endpoint: [UnsafeMutableRawPointer]] = [:]
        let limit = 4

        /// A kept handle for `endpoint`, options reset, or a new one (nil when libcurl cannot
        /// make one).
        func take(_ endpoint: Endpoint) -> UnsafeMutableRawPointer? {
            if let kept = lock.withLock({ idle[endpoint]?.popLast() }) {
                curl_easy_reset(kept)
                return kept
            }
            return curl_easy_init()
        }

        func give(_ handle: UnsafeMutableRawPointer, _ endpoint: Endpoint) {
            let extra: UnsafeMutableRawPointer? = lock.withLock {
                guard idle[endpoint, default: []].count < limit else { return handle }
                idle[endpoint, default: []].append(handle)
                return nil
            }
            if let extra { curl_easy_cleanup(extra) }
        }
    }
}

/// A point in time a piece of work must finish by (monotonic clock).
struct Deadline: Sendable {
    let end: UInt64

    init(seconds: Double) {
        end = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1_000_000_000)
    }

    var millisecondsLeft: Int {
        let now = DispatchTime.now().uptimeNanoseconds
        return now >= end ? 0 : Int((end - now + 999_999) / 1_000_000)
    }
}
