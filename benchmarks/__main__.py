"""``python -m benchmarks``: the machine, then data, backbone, segmentation and scene benchmarks."""

from benchmarks import backbone, data_pipeline, machine, scene, segmentation

if __name__ == "__main__":
    machine.describe()
    data_pipeline.main([])
    backbone.main()
    segmentation.main()
    scene.main(["--size", "1024"])  # a quarter of docs/benchmarks.md's scene: fits slow CPUs
