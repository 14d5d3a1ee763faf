"""``python -m benchmarks``: the data-pipeline and backbone benchmarks, one after the other."""

from benchmarks import backbone, data_pipeline

if __name__ == "__main__":
    data_pipeline.main([])
    backbone.main()
