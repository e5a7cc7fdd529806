/// What `pgcluster render` writes for a spec, by backend.
public enum RenderCommand {
    public static func files(_ renderer: Renderer) throws(ClusterError) -> [RenderedFile] {
        switch renderer.spec.backend {
        case .local: try renderer.nodeFiles()
        case .compose: try renderer.nodeFiles() + ComposeRenderer(renderer: renderer).projectFiles()
        }
    }
}
