/// Renders a self-contained docker-compose project for a `backend: compose` spec.
public struct ComposeRenderer: Sendable {
    public let renderer: Renderer

    public init(renderer: Renderer) { self.renderer = renderer }

    public func projectFiles() throws(ClusterError) -> [RenderedFile] {
        []
    }
}
