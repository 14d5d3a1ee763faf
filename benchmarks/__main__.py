"""``python -m benchmarks``: the machine, then the data, backbone and segmentation benchmarks."""

from benchmarks import backbone, data_pipeline, machine, segmentation

if __name__ == "__main__":
    machine.describe()
    data_pipeline.main([])
    backbone.main()
    segmentation.main()
