"""The napari plugin: sample data, reader, writer, widgets (napari/Qt imports live here only)."""
