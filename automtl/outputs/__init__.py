"""What a run leaves behind and the commands around it: tables, run folders, reports, exports, predictions."""
