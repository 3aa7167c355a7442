"""The merchant agent: software that runs a shop unattended (issue 16).

It follows the node's event stream for the merchant's shops, accepts and delivers
orders per its configuration, warns before deadlines and notifies the merchant's
systems by signed webhooks; reports summarise a shop's sales for accounting.
"""
