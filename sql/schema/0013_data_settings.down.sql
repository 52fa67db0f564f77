DROP TABLE IF EXISTS pipeline_data_setting;
