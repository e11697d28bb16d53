fn main() -> std::process::ExitCode {
    hfmesh::cli::main()
}
